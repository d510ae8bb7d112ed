package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/ratatouille/rat/hub/server"
	"github.com/ratatouille/rat/ota/rollout"
)

// Release routes (docs/ota.md):
//
//	POST /v1/groups/{group}/releases                      register a draft (operator)
//	GET  /v1/groups/{group}/releases                      list (operator)
//	POST /v1/groups/{group}/releases/{version}/approve    approve: the policy's Sigstore bundle must verify (operator)
//	POST /v1/groups/{group}/releases/{version}/state      {"state": "rolling-out"|"complete"|"retired"} (operator)
//	GET  /v1/groups/{group}/releases/{version}            the gate: operator token or the gate token
func (a *API) releaseRoutes() {
	a.handle("POST /v1/groups/{group}/releases", a.addRelease)
	a.handle("GET /v1/groups/{group}/releases", a.listReleases)
	a.handle("POST /v1/groups/{group}/releases/{version}/approve", a.approveRelease)
	a.handle("POST /v1/groups/{group}/releases/{version}/state", a.releaseState)
	a.mux.HandleFunc("GET /v1/groups/{group}/releases/{version}", a.gate)
}

// SetGateToken lets OTA servers call the release gate with their own
// bearer token (at least 16 characters). It opens the gate only: the
// token reads one release's approval and digests, never devices or
// policies, and changes nothing, so an OTA server need not hold the
// operator token.
func (a *API) SetGateToken(token string) error {
	if len(token) < 16 {
		return errors.New("api: the gate token must be at least 16 characters")
	}
	h := sha256.Sum256([]byte(token))
	a.gateToken = &h
	return nil
}

func (a *API) gateAuthorized(r *http.Request) bool {
	if a.Authorized(r) {
		return true
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || a.gateToken == nil {
		return false
	}
	got := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(got[:], a.gateToken[:]) == 1
}

// ReleaseView is a release as the API shows it (the policy and bundle
// bytes are left out; their digest is there).
type ReleaseView struct {
	rollout.Release
	Issuer string `json:"issuer,omitempty"`
}

func releaseView(r *server.ReleaseRecord) ReleaseView {
	return ReleaseView{Release: r.Release, Issuer: r.Issuer}
}

func releaseErr(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, server.ErrNoSuchRelease):
		code = http.StatusNotFound
	case errors.Is(err, server.ErrReleaseExists):
		code = http.StatusConflict
	case errors.Is(err, server.ErrUnsigned):
		code = http.StatusForbidden
	case errors.Is(err, server.ErrReleaseInvalid):
		code = http.StatusBadRequest
	}
	writeErr(w, code, err.Error())
}

// addRelease takes {"version", "image_digest", "policy_base64",
// "bundle_base64", "by"}: the exact policy bytes that were signed,
// base64 so no JSON re-encoding can change them.
func (a *API) addRelease(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Version     string `json:"version"`
		ImageDigest string `json:"image_digest"`
		Policy      []byte `json:"policy_base64"`
		Bundle      []byte `json:"bundle_base64"`
		By          string `json:"by"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<20)).Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, "release: "+err.Error())
		return
	}
	if req.By == "" {
		req.By = "operator"
	}
	rec, err := a.srv.AddRelease(r.PathValue("group"), req.Version, req.ImageDigest, req.Policy, req.Bundle, req.By)
	if err != nil {
		releaseErr(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(releaseView(rec))
}

func (a *API) listReleases(w http.ResponseWriter, r *http.Request) {
	rs, err := a.srv.Releases(r.PathValue("group"))
	if err != nil {
		releaseErr(w, err)
		return
	}
	out := make([]ReleaseView, 0, len(rs))
	for i := range rs {
		out = append(out, releaseView(&rs[i]))
	}
	writeJSON(w, out)
}

type transitionReq struct {
	State  rollout.State `json:"state"`
	By     string        `json:"by"`
	Reason string        `json:"reason"`
}

func readTransition(w http.ResponseWriter, r *http.Request) (transitionReq, bool) {
	var req transitionReq
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		writeErr(w, http.StatusBadRequest, "transition: "+err.Error())
		return req, false
	}
	if req.By == "" {
		req.By = "operator"
	}
	return req, true
}

func (a *API) approveRelease(w http.ResponseWriter, r *http.Request) {
	req, ok := readTransition(w, r)
	if !ok {
		return
	}
	rec, err := a.srv.ApproveRelease(r.PathValue("group"), r.PathValue("version"), req.By, req.Reason)
	if err != nil {
		releaseErr(w, err)
		return
	}
	writeJSON(w, releaseView(rec))
}

func (a *API) releaseState(w http.ResponseWriter, r *http.Request) {
	req, ok := readTransition(w, r)
	if !ok {
		return
	}
	rec, err := a.srv.SetReleaseState(r.PathValue("group"), r.PathValue("version"), req.State, req.By, req.Reason)
	if err != nil {
		releaseErr(w, err)
		return
	}
	writeJSON(w, releaseView(rec))
}

// gate answers an OTA server: 200 approved, 403 known but not approved,
// 404 unknown, always with the rollout.GateAnswer body.
func (a *API) gate(w http.ResponseWriter, r *http.Request) {
	if !a.gateAuthorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="rat-hub"`)
		writeErr(w, http.StatusUnauthorized, "operator or gate token required")
		return
	}
	ans, code, err := a.srv.Gate(r.PathValue("group"), r.PathValue("version"))
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(ans)
}
