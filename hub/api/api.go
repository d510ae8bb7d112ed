package api

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/ratatouille/rat/evidence/failure"
	"github.com/ratatouille/rat/evidence/ima"
	"github.com/ratatouille/rat/evidence/protocol"
	"github.com/ratatouille/rat/hub/export"
	"github.com/ratatouille/rat/hub/server"
	"github.com/ratatouille/rat/hub/store"
)

// API serves the hub's HTTP routes.
type API struct {
	// TrustedRoot is the Sigstore trusted root (JSON) included in exports.
	TrustedRoot []byte
	srv         *server.Server
	token       [32]byte
	gateToken   *[32]byte // optional read token for the release gate (releases.go)
	mux         *http.ServeMux
}

// New returns the API for srv, guarded by token (which must be non-empty).
func New(srv *server.Server, token string) (*API, error) {
	if len(token) < 16 {
		return nil, errors.New("api: the operator token must be at least 16 characters")
	}
	a := &API{srv: srv, token: sha256.Sum256([]byte(token)), mux: http.NewServeMux()}
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	a.handle("GET /metrics", a.metrics)
	a.handle("GET /v1/devices", a.devices)
	a.handle("GET /v1/devices/{id}", a.device)
	a.handle("GET /v1/devices/{id}/events", a.events)
	a.handle("POST /v1/devices/{id}/clear", a.clear)
	a.handle("GET /v1/devices/{id}/evidence", a.evidence)
	a.handle("POST /v1/devices/{id}/decommission", a.decommission)
	a.handle("POST /v1/devices/{id}/ingest", a.ingest)
	a.handle("GET /v1/devices/{id}/ima-log", a.imaLog)
	a.handle("GET /v1/devices/{id}/bundle", a.bundle)
	a.mux.HandleFunc("GET /v1/hub-key", a.hubKey)
	a.handle("GET /v1/groups", a.groups)
	a.handle("GET /v1/policies", a.policies)
	a.handle("PUT /v1/groups/{group}/policy", a.putPolicy)
	a.releaseRoutes()
	return a, nil
}

// Authorized reports whether r carries the operator token.
func (a *API) Authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return false
	}
	got := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(got[:], a.token[:]) == 1
}

func (a *API) handle(pattern string, h http.HandlerFunc) {
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if !a.Authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="rat-hub"`)
			writeErr(w, http.StatusUnauthorized, "operator token required")
			return
		}
		h(w, r)
	})
}

// Mount adds a handler that does its own authentication (webhooks check
// their HMAC, token endpoints their callers).
func (a *API) Mount(pattern string, h http.Handler) { a.mux.Handle(pattern, h) }

// MountAuthed adds a handler behind the operator token.
func (a *API) MountAuthed(pattern string, h http.Handler) { a.handle(pattern, h.ServeHTTP) }

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeErr(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// DeviceView is a device as the API shows it.
type DeviceView struct {
	ID           string          `json:"id"`
	Fleet        string          `json:"fleet"`
	Group        string          `json:"group"`
	State        string          `json:"state"`
	Reason       string          `json:"reason,omitempty"`
	EKVerified   bool            `json:"ek_verified"`
	EKIssuer     string          `json:"ek_issuer,omitempty"`
	TOFU         bool            `json:"tofu,omitempty"`
	EnrolledAt   time.Time       `json:"enrolled_at"`
	LastSeen     time.Time       `json:"last_seen"`
	LastVerified time.Time       `json:"last_verified"`
	BootID       string          `json:"boot_id,omitempty"`
	IMAEntries   uint64          `json:"ima_entries"`
	Quotes       uint64          `json:"quotes"`
	NextSeq      uint64          `json:"next_seq"`
	Thinned      uint64          `json:"thinned,omitempty"`
	Release      string          `json:"release,omitempty"`
	PolicyDigest string          `json:"policy_digest,omitempty"`
	Failures     []failure.Event `json:"failures,omitempty"`
	Events       []store.Event   `json:"events,omitempty"`
}

func view(d *store.Device) DeviceView {
	return DeviceView{ID: d.ID, Fleet: d.Fleet, Group: d.Group, State: d.State, Reason: d.Reason, EKVerified: d.EKVerified,
		EKIssuer: d.EKIssuer, TOFU: d.TOFU, EnrolledAt: d.EnrolledAt, LastSeen: d.LastSeen, LastVerified: d.LastVerified,
		BootID: d.BootID, IMAEntries: d.IMACount, Quotes: d.Quotes, NextSeq: d.NextSeq, Thinned: d.Thinned, Release: d.Release,
		PolicyDigest: d.PolicyDigest, Failures: d.Failures}
}

func (a *API) devices(w http.ResponseWriter, _ *http.Request) {
	ds, err := a.srv.SortedDevices()
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err.Error())
		return
	}
	out := make([]DeviceView, 0, len(ds))
	for i := range ds {
		v := view(&ds[i])
		v.Failures = nil
		out = append(out, v)
	}
	writeJSON(w, out)
}

func (a *API) lookup(w http.ResponseWriter, r *http.Request) (*store.Device, bool) {
	id := r.PathValue("id")
	key := id
	if !strings.Contains(id, "/") {
		key = a.srv.Fleet() + "/" + id
	}
	d, err := a.srv.Store().Device(key)
	if errors.Is(err, store.ErrNotFound) {
		writeErr(w, http.StatusNotFound, "no device "+id)
		return nil, false
	}
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err.Error())
		return nil, false
	}
	return d, true
}

func (a *API) device(w http.ResponseWriter, r *http.Request) {
	d, ok := a.lookup(w, r)
	if !ok {
		return
	}
	v := view(d)
	v.Events, _ = a.srv.Store().Events(d.Key, 50)
	writeJSON(w, v)
}

func (a *API) events(w http.ResponseWriter, r *http.Request) {
	d, ok := a.lookup(w, r)
	if !ok {
		return
	}
	ev, err := a.srv.Store().Events(d.Key, 1000)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, ev)
}

// RecordView summarises one stored evidence record.
type RecordView struct {
	Seq        uint64 `json:"seq"`
	Quoted     bool   `json:"quoted"`
	IMAStart   uint64 `json:"ima_start"`
	IMAEntries int    `json:"ima_entries"`
	Thinned    uint64 `json:"thinned,omitempty"`
	Time       int64  `json:"time"`
	Bytes      int    `json:"bytes"`
}

func (a *API) evidence(w http.ResponseWriter, r *http.Request) {
	d, ok := a.lookup(w, r)
	if !ok {
		return
	}
	var out []RecordView
	err := a.srv.Store().Evidence(d.Key, 0, ^uint64(0), func(seq uint64, raw []byte) error {
		var e protocol.Evidence
		if err := protocol.Unmarshal(raw, &e); err != nil {
			return fmt.Errorf("record %d: %w", seq, err)
		}
		n := 0
		if len(e.IMA) > 0 {
			es, err := ima.ParseBinary(bytes.NewReader(e.IMA))
			if err != nil {
				return fmt.Errorf("record %d: %w", seq, err)
			}
			n = len(es)
		}
		out = append(out, RecordView{Seq: seq, Quoted: e.Quoted(), IMAStart: e.IMAStart, IMAEntries: n, Thinned: e.Thinned, Time: e.Time, Bytes: len(raw)})
		return nil
	})
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err.Error())
		return
	}
	if out == nil {
		out = []RecordView{}
	}
	writeJSON(w, out)
}

// bundle exports the device's evidence (?from=&to= as RFC 3339 times,
// ?records=compact|delta|full) as an offline bundle for rat-audit.
func (a *API) bundle(w http.ResponseWriter, r *http.Request) {
	d, ok := a.lookup(w, r)
	if !ok {
		return
	}
	o := export.Options{Hub: "rat-hub/" + a.srv.Fleet(), Key: a.srv.Key(), TrustedRoot: a.TrustedRoot}
	for name, dst := range map[string]*time.Time{"from": &o.From, "to": &o.To} {
		if v := r.URL.Query().Get(name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				writeErr(w, http.StatusBadRequest, name+": "+err.Error())
				return
			}
			*dst = t
		}
	}
	o.Records = r.URL.Query().Get("records")
	if _, err := export.RecordOption(o.Records); err != nil {
		writeErr(w, http.StatusBadRequest, "records: "+err.Error())
		return
	}
	// Encode into memory first so that an error is an error response, not
	// a truncated bundle.
	var buf bytes.Buffer
	if err := export.Write(&buf, a.srv.Store(), d.Key, o); err != nil {
		writeErr(w, http.StatusConflict, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/cbor-seq")
	w.Header().Set("Content-Disposition", `attachment; filename="`+d.ID+`.bundle.cbor"`)
	_, _ = w.Write(buf.Bytes())
}

// hubKey serves the hub's public key (PEM) for auditors to pin. It is
// public: auditors should still get it out of band and compare.
func (a *API) hubKey(w http.ResponseWriter, _ *http.Request) {
	k := a.srv.Key()
	if k == nil {
		writeErr(w, http.StatusNotFound, "this hub has no signing key")
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, _ = w.Write(k.PublicPEM())
}

// imaLog serves the device's current boot's verified IMA list (binary).
func (a *API) imaLog(w http.ResponseWriter, r *http.Request) {
	d, ok := a.lookup(w, r)
	if !ok {
		return
	}
	b, err := a.srv.BootLog(d.Key)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(b)
}

// ingest takes an offline bundle exported from the device's outbox.
func (a *API) ingest(w http.ResponseWriter, r *http.Request) {
	d, ok := a.lookup(w, r)
	if !ok {
		return
	}
	res, err := a.srv.Ingest(d.Fleet, d.ID, io.LimitReader(r.Body, 1<<30))
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, res)
}

func (a *API) decommission(w http.ResponseWriter, r *http.Request) {
	d, ok := a.lookup(w, r)
	if !ok {
		return
	}
	why := r.URL.Query().Get("reason")
	if why == "" {
		why = "decommissioned by an operator"
	}
	if err := a.srv.Decommission(d.Key, why); err != nil {
		writeErr(w, http.StatusConflict, err.Error())
		return
	}
	d, _ = a.srv.Store().Device(d.Key)
	writeJSON(w, view(d))
}

func (a *API) clear(w http.ResponseWriter, r *http.Request) {
	d, ok := a.lookup(w, r)
	if !ok {
		return
	}
	if err := a.srv.Clear(d.Key); err != nil {
		writeErr(w, http.StatusConflict, err.Error())
		return
	}
	d, _ = a.srv.Store().Device(d.Key)
	writeJSON(w, view(d))
}

func (a *API) groups(w http.ResponseWriter, _ *http.Request) {
	ds, err := a.srv.SortedDevices()
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err.Error())
		return
	}
	type group struct {
		Name    string         `json:"name"`
		Devices int            `json:"devices"`
		States  map[string]int `json:"states"`
		Policy  string         `json:"policy_digest,omitempty"`
	}
	m := map[string]*group{}
	for _, d := range ds {
		g := m[d.Group]
		if g == nil {
			g = &group{Name: d.Group, States: map[string]int{}}
			if p, err := a.srv.Store().ActivePolicy(d.Group); err == nil {
				g.Policy = p.Digest
			}
			m[d.Group] = g
		}
		g.Devices++
		g.States[d.State]++
	}
	out := make([]*group, 0, len(m))
	for _, g := range m {
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	writeJSON(w, out)
}

func (a *API) policies(w http.ResponseWriter, r *http.Request) {
	ps, err := a.srv.Store().Policies(r.URL.Query().Get("group"))
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err.Error())
		return
	}
	for i := range ps {
		ps[i].JSON = nil
		ps[i].Bundle = nil
	}
	writeJSON(w, ps)
}

// putPolicy takes {"policy_base64": ..., "bundle_base64": ...} — the exact
// bytes that were signed, base64-encoded so that no JSON re-encoding can
// change them — or a bare policy document (which only a hub that accepts
// unsigned policies takes).
func (a *API) putPolicy(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 32<<20))
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	var wrapped struct {
		Policy []byte `json:"policy_base64"`
		Bundle []byte `json:"bundle_base64"`
	}
	doc, bundle := body, []byte(nil)
	if json.Unmarshal(body, &wrapped) == nil && len(wrapped.Policy) > 0 {
		doc, bundle = wrapped.Policy, wrapped.Bundle
	}
	p, err := a.srv.SetPolicy(r.PathValue("group"), doc, bundle, "api", "")
	if err != nil {
		code := http.StatusBadRequest
		if errors.Is(err, server.ErrUnsigned) {
			code = http.StatusForbidden
		}
		writeErr(w, code, err.Error())
		return
	}
	p.JSON, p.Bundle = nil, nil
	writeJSON(w, p)
}

func (a *API) metrics(w http.ResponseWriter, _ *http.Request) {
	counts, err := a.srv.DeviceStates()
	if err != nil {
		http.Error(w, "device states: "+err.Error(), http.StatusInternalServerError)
		return
	}
	m := &a.srv.Metrics
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	counters := []struct {
		name, help string
		v          uint64
	}{
		{"rat_hub_messages_total", "MQTT messages received from devices.", m.Messages.Load()},
		{"rat_hub_evidence_accepted_total", "Evidence records accepted into a device's chain.", m.Verified.Load()},
		{"rat_hub_evidence_rejected_total", "Messages refused (replay, gap, stale nonce, bad signature…).", m.Rejected.Load()},
		{"rat_hub_evidence_duplicates_total", "Republished records acknowledged again.", m.Duplicates.Load()},
		{"rat_hub_messages_malformed_total", "Messages that did not decode.", m.Malformed.Load()},
		{"rat_hub_untrusted_total", "Transitions to UNTRUSTED.", m.Untrusted.Load()},
		{"rat_hub_broker_denied_total", "Connects, publishes and subscribes the embedded broker refused.", m.Denied.Load()},
		{"rat_hub_evidence_pruned_total", "Evidence records deleted by the retention (--evidence-retention).", m.Pruned.Load()},
	}
	for _, c := range counters {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", c.name, c.help, c.name, c.name, c.v)
	}
	states := map[string]int{store.Enrolling: 0, store.Trusted: 0, store.Untrusted: 0, store.Stale: 0, store.Decommissioned: 0}
	for st, n := range counts {
		states[st] += n
	}
	keys := make([]string, 0, len(states))
	for k := range states {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintf(w, "# HELP rat_hub_devices Devices by state.\n# TYPE rat_hub_devices gauge\n")
	for _, k := range keys {
		fmt.Fprintf(w, "rat_hub_devices{state=%q} %d\n", k, states[k])
	}
}
