package ear

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// TokenRequest is the body of POST /v1/tokens.
type TokenRequest struct {
	DeviceID string `json:"device_id"`
	Nonce    string `json:"nonce"`
	Audience string `json:"audience"`
}

// TokenResponse is the answer of POST /v1/tokens.
type TokenResponse struct {
	Token     string    `json:"token"`
	ID        string    `json:"id"`
	Status    string    `json:"ear_status"`
	ExpiresAt time.Time `json:"expires_at"`
	Reasons   []string  `json:"reasons,omitempty"`
}

const maxRequestBody = 4 << 10

// DecodeTokenRequest parses a POST /v1/tokens body strictly: one JSON
// object, known fields only, at most 4 KiB. Field values are checked by Issue.
func DecodeTokenRequest(r io.Reader) (TokenRequest, error) {
	var req TokenRequest
	dec := json.NewDecoder(io.LimitReader(r, maxRequestBody+1))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return TokenRequest{}, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if dec.More() {
		return TokenRequest{}, fmt.Errorf("%w: trailing data after the JSON object", ErrBadRequest)
	}
	if _, err := dec.Token(); err != io.EOF {
		return TokenRequest{}, fmt.Errorf("%w: trailing data after the JSON object", ErrBadRequest)
	}
	if dec.InputOffset() > maxRequestBody {
		return TokenRequest{}, fmt.Errorf("%w: body over %d bytes", ErrBadRequest, maxRequestBody)
	}
	return req, nil
}

// NewHandler serves the token endpoints:
//
//	POST /v1/tokens             issue (auth required)
//	GET  /v1/tokens/{id}/status revocation status (no auth: ids are 128-bit random
//	                            and the answer says nothing but active/revoked/expired)
//	GET  /.well-known/jwks.json public keys (no auth)
//
// auth decides whether a request comes from an operator or a registered
// relying party; nil refuses every issuance (fail closed).
func NewHandler(issuer *Issuer, src Source, auth func(*http.Request) bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/tokens", func(w http.ResponseWriter, r *http.Request) {
		if auth == nil || !auth(r) {
			w.Header().Set("WWW-Authenticate", "Bearer")
			writeError(w, http.StatusUnauthorized, "not authorized to request tokens")
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
			writeError(w, http.StatusUnsupportedMediaType, "want application/json")
			return
		}
		req, err := DecodeTokenRequest(r.Body)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		tok, err := issuer.Issue(r.Context(), src, req.DeviceID, req.Nonce, req.Audience)
		switch {
		case errors.Is(err, ErrBadRequest):
			writeError(w, http.StatusBadRequest, err.Error())
			return
		case errors.Is(err, ErrUnknownDevice):
			writeError(w, http.StatusNotFound, "unknown device")
			return
		case err != nil:
			writeError(w, http.StatusInternalServerError, "could not issue token")
			return
		}
		writeJSON(w, http.StatusOK, TokenResponse{
			Token: tok.JWT, ID: tok.ID, Status: tok.Status, ExpiresAt: tok.ExpiresAt, Reasons: tok.Reasons,
		})
	})
	mux.HandleFunc("GET /v1/tokens/{id}/status", func(w http.ResponseWriter, r *http.Request) {
		st, ok := issuer.Status(r.PathValue("id"))
		if !ok {
			writeError(w, http.StatusNotFound, "unknown token")
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, r *http.Request) {
		// Short cache: after a rotation relying parties see the new key soon;
		// retired keys stay listed, so a stale cache never breaks old tokens.
		w.Header().Set("Cache-Control", "public, max-age=60")
		w.Header().Set("Content-Type", "application/jwk-set+json")
		b, _ := json.Marshal(issuer.JWKS())
		w.WriteHeader(http.StatusOK)
		w.Write(b)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encoding failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
