package release

import (
	"encoding/json"
	"errors"
	"log"
	"net/http"
	"strings"
)

// ClientCertIdentity names the caller by the CommonName of its verified TLS
// client certificate (the device's mTLS identity). Without a verified chain
// there is no identity and nothing is released.
func ClientCertIdentity(r *http.Request) (string, error) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return "", errors.New("no verified client certificate")
	}
	cn := r.TLS.VerifiedChains[0][0].Subject.CommonName
	if cn == "" {
		return "", errors.New("client certificate has no CommonName")
	}
	return cn, nil
}

// Server releases Secret to attested callers:
//
//	POST /v1/nonce   -> {"nonce": "..."} for the calling device
//	GET  /v1/secret  with "Authorization: Bearer <EAR token>" -> {"secret": "..."}
type Server struct {
	Verifier *Verifier
	Secret   func(deviceID string) []byte
	// Identify names the caller; nil means ClientCertIdentity.
	Identify func(*http.Request) (string, error)
	Logf     func(format string, args ...any)
}

func (s *Server) identify(r *http.Request) (string, error) {
	if s.Identify != nil {
		return s.Identify(r)
	}
	return ClientCertIdentity(r)
}

func (s *Server) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
		return
	}
	log.Printf(format, args...)
}

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/nonce", func(w http.ResponseWriter, r *http.Request) {
		dev, err := s.identify(r)
		if err != nil {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": err.Error()})
			return
		}
		n, err := s.Verifier.Nonces.New(dev)
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "no nonce"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"nonce": n})
	})
	mux.HandleFunc("GET /v1/secret", func(w http.ResponseWriter, r *http.Request) {
		dev, err := s.identify(r)
		if err != nil {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": err.Error()})
			return
		}
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || tok == "" {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "no bearer token"})
			return
		}
		c, err := s.Verifier.Verify(r.Context(), tok, dev)
		if err != nil {
			// The reason is the caller's own business (it is the device the
			// token names or claims to be); the token itself is never logged.
			s.logf("secret-release: refused %s: %v", dev, err)
			writeJSON(w, http.StatusForbidden, map[string]string{"error": err.Error()})
			return
		}
		s.logf("secret-release: released to %s (token %s)", dev, c.ID)
		writeJSON(w, http.StatusOK, map[string]string{"secret": string(s.Secret(dev))})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
