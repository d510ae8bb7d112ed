package main

// Attestation-result tokens (issue 9) in the running hub: hub/ear's issuer
// fed by the hub store (hub/ear/storesource), revoked when a device turns
// UNTRUSTED, answering devices over MQTT and operators/relying parties over
// HTTP. See docs/attestation-results.md, "Tokens from the running hub".

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ratatouille/rat/evidence/protocol"
	"github.com/ratatouille/rat/hub/api"
	"github.com/ratatouille/rat/hub/ear"
	"github.com/ratatouille/rat/hub/ear/storesource"
	"github.com/ratatouille/rat/hub/server"
	"github.com/ratatouille/rat/hub/store"
)

// tokenOptions are the --token* flags of `rat-hub serve`.
type tokenOptions struct {
	Enabled     bool
	Lifetime    time.Duration
	MaxAge      time.Duration
	RotateEvery time.Duration
	KeyDir      string // default DATA/ear-keys
	DBPath      string // default DATA/ear-tokens.db
	Issuer      string
	Audiences   []string // device requests: allowed audiences, the first is the default
	Webhooks    []string
	RPFile      string // relying-party credentials for POST /v1/tokens
}

var (
	tokenOpts             tokenOptions
	tokenFS               *flag.FlagSet
	tokenAuds, tokenHooks multi
	tokenSvc              *tokenService
)

func init() {
	serveFlags = append(serveFlags, func(fs *flag.FlagSet) {
		tokenFS = fs
		fs.BoolVar(&tokenOpts.Enabled, "tokens", true, "issue EAR attestation-result tokens (POST /v1/tokens, MQTT \"token\", JWKS, status); --tokens=false turns them off")
		fs.DurationVar(&tokenOpts.Lifetime, "token-lifetime", ear.DefaultLifetime, "lifetime of attestation-result tokens")
		fs.DurationVar(&tokenOpts.MaxAge, "token-max-age", ear.DefaultMaxAge, "a token is affirming only if the device's last verified quote is at most this old")
		fs.DurationVar(&tokenOpts.RotateEvery, "token-rotate-every", 24*time.Hour, "rotate the token signing key this often (0: never); old keys stay in the JWKS until their tokens expired")
		fs.StringVar(&tokenOpts.KeyDir, "token-key-dir", "", "token signing keys (default DATA/ear-keys)")
		fs.StringVar(&tokenOpts.Issuer, "token-issuer", ear.DefaultIssuer, "iss claim of tokens (relying parties pin it)")
		fs.Var(&tokenAuds, "token-audience", "audience a device may ask for over MQTT (repeatable; the first is the default for requests naming none; unset: any, and the request must name one)")
		fs.Var(&tokenHooks, "token-webhook", "https URL receiving each token revocation as a signed Security Event Token (repeatable)")
		fs.StringVar(&tokenOpts.RPFile, "token-rp-credentials", "", "file of relying-party credentials allowed to POST /v1/tokens: lines \"name sha256:<hex of the bearer credential>\"")
	})
	configHooks = append(configHooks, func(cfg *server.Config) error {
		if !tokenOpts.Enabled {
			return nil
		}
		o := tokenOpts
		o.Audiences, o.Webhooks = tokenAuds, tokenHooks
		data := tokenFS.Lookup("data").Value.String()
		if o.KeyDir == "" {
			o.KeyDir = filepath.Join(data, "ear-keys")
		}
		o.DBPath = filepath.Join(data, "ear-tokens.db")
		log := cfg.Log
		if log == nil {
			log = slog.Default()
		}
		t, err := newTokenService(o, cfg.Store, cfg.Fleet, log)
		if err != nil {
			return err
		}
		if err := t.configure(cfg); err != nil {
			t.Close()
			return err
		}
		tokenSvc = t
		return nil
	})
	serveHooks = append(serveHooks, func(ctx context.Context, h *hubRuntime) error {
		if tokenSvc == nil {
			return nil
		}
		tokenSvc.mount(h.API)
		go func() {
			<-ctx.Done()
			tokenSvc.issuer.Close() // wait for revocation pushes in flight
		}()
		h.Log.Info("attestation-result tokens on", "jwks", "/.well-known/jwks.json", "lifetime", tokenOpts.Lifetime,
			"key_dir", tokenSvc.keyDir, "relying_parties", len(tokenSvc.rps))
		return nil
	})
}

// tokenService is the hub's token issuer with its store-backed source.
type tokenService struct {
	issuer    *ear.Issuer
	persist   *ear.BoltPersister
	src       *storesource.Source
	st        store.Store
	audiences []string
	rps       []rpCredential
	keyDir    string
	log       *slog.Logger
}

type rpCredential struct {
	name string
	hash [32]byte
}

func newTokenService(o tokenOptions, st store.Store, fleet string, log *slog.Logger) (*tokenService, error) {
	if st == nil {
		return nil, errors.New("tokens: no store")
	}
	if fleet == "" {
		fleet = "default" // as server.Start does
	}
	for _, a := range o.Audiences {
		if a == "" || strings.ContainsAny(a, " \t\r\n") {
			return nil, fmt.Errorf("tokens: --token-audience %q is empty or contains spaces", a)
		}
	}
	t := &tokenService{st: st, audiences: o.Audiences, keyDir: o.KeyDir, log: log.With("component", "tokens")}
	if o.RPFile != "" {
		rps, err := loadRPCredentials(o.RPFile)
		if err != nil {
			return nil, err
		}
		t.rps = rps
	}
	p, err := ear.OpenBoltPersister(o.DBPath)
	if err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	t.persist = p
	opts := []ear.Option{
		ear.WithLifetime(o.Lifetime), ear.WithMaxAge(o.MaxAge), ear.WithRotateEvery(o.RotateEvery),
		ear.WithIssuerName(o.Issuer), ear.WithVerifierID("rat-hub/"+version, "ratatouille"), ear.WithPersister(p),
		ear.WithLogf(func(f string, a ...any) { t.log.Warn(fmt.Sprintf(f, a...)) }),
	}
	for _, u := range o.Webhooks {
		opts = append(opts, ear.WithWebhook(u))
	}
	if t.issuer, err = ear.NewIssuer(ear.FileKeyStore{Dir: o.KeyDir}, opts...); err != nil {
		p.Close()
		return nil, fmt.Errorf("tokens: %w", err)
	}
	t.src = &storesource.Source{Store: st, Fleet: fleet, Issuer: t.issuer,
		Logf: func(f string, a ...any) { t.log.Info(fmt.Sprintf(f, a...)) }}
	// The device's history says its tokens were revoked, next to the
	// verdict that caused it.
	t.issuer.Subscribe(func(ev ear.RevocationEvent) {
		detail := fmt.Sprintf("attestation-result tokens revoked (%d unexpired); no affirming token until the hub judges it TRUSTED again", len(ev.TokenIDs))
		_ = st.AppendEvents(t.src.Key(ev.DeviceID), []store.Event{{Time: ev.RevokedAt, Kind: "action", Detail: detail}})
		t.log.Info("tokens revoked", "device", ev.DeviceID, "tokens", len(ev.TokenIDs), "reason", ev.Reason)
	})
	return t, nil
}

// Close releases the persister (after the hub stopped).
func (t *tokenService) Close() {
	t.issuer.Close()
	t.persist.Close()
}

// configure hooks the service into the hub: revocation on UNTRUSTED and
// device token requests over MQTT.
func (t *tokenService) configure(cfg *server.Config) error {
	if cfg.OnToken != nil {
		return errors.New("tokens: another component already answers device token requests")
	}
	prev := cfg.OnUntrusted
	cfg.OnUntrusted = func(key string) {
		t.revoke(key)
		if prev != nil {
			prev(key)
		}
	}
	cfg.OnToken = t.deviceToken
	return nil
}

// revoke runs on the device's hub worker right after its UNTRUSTED state
// was stored, so no token request of that device can be answered between
// the verdict and the revocation.
func (t *tokenService) revoke(key string) {
	id, ok := t.src.DeviceID(key)
	if !ok {
		t.log.Error("revoke: device key of another fleet", "key", key)
		return
	}
	reason := "device UNTRUSTED"
	if d, err := t.st.Device(key); err == nil && d.Reason != "" {
		reason = d.Reason
	}
	if err := t.issuer.RevokeWithReason(id, reason); err != nil {
		// In effect in memory; only persisting failed.
		t.log.Error("revoke tokens", "device", id, "err", err)
	}
}

// deviceToken answers a device asking for its own token over MQTT. The
// broker has authenticated the device as the topic's device id (username =
// client id = device id, and the certificate CommonName with mTLS), so key
// names the device; the token can only ever be about that device.
func (t *tokenService) deviceToken(key string, req *protocol.TokenRequest) *protocol.TokenResponse {
	refuse := func(why string) *protocol.TokenResponse {
		t.log.Info("device token request refused", "device", key, "why", why)
		return &protocol.TokenResponse{Reason: why}
	}
	id, ok := t.src.DeviceID(key)
	if !ok {
		return refuse("unknown device")
	}
	aud := req.Audience
	switch {
	case aud == "" && len(t.audiences) == 0:
		return refuse("no audience named and the hub has no default audience")
	case aud == "":
		aud = t.audiences[0]
	case len(t.audiences) > 0 && !slices.Contains(t.audiences, aud):
		return refuse(fmt.Sprintf("audience %q is not one the hub issues device tokens for", aud))
	}
	// The nonce is the relying party's challenge as text (EAR's eat_nonce is
	// a string): printable ASCII only, so it reaches the JWT unchanged.
	for _, c := range req.Nonce {
		if c < 0x21 || c > 0x7e {
			return refuse("nonce must be printable ASCII text")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tok, err := t.issuer.IssueForDevice(ctx, t.src, id, string(req.Nonce), aud)
	switch {
	case errors.Is(err, ear.ErrBadRequest):
		return refuse(err.Error())
	case errors.Is(err, ear.ErrUnknownDevice):
		return refuse("unknown device")
	case err != nil:
		t.log.Error("device token", "device", id, "err", err)
		return refuse("could not issue token")
	}
	t.log.Info("token issued", "device", id, "token", tok.ID, "ear_status", tok.Status, "requester", ear.RequesterDevice, "audience", aud)
	resp := &protocol.TokenResponse{Token: tok.JWT}
	if tok.Status != "affirming" {
		resp.Reason = "ear.status " + tok.Status + ": " + strings.Join(tok.Reasons, "; ")
	}
	return resp
}

// mount adds the token endpoints to the hub's HTTP API:
//
//	POST /v1/tokens             operator token or a relying-party credential
//	GET  /v1/tokens/{id}/status public (128-bit random ids; says only active/revoked/expired)
//	GET  /.well-known/jwks.json public
func (t *tokenService) mount(a *api.API) {
	h := ear.NewHandler(t.issuer, t.src, func(r *http.Request) bool { return t.authorize(a, r) })
	a.Mount("POST /v1/tokens", h)
	a.Mount("GET /v1/tokens/{id}/status", h)
	a.Mount("GET /.well-known/jwks.json", h)
}

// authorize admits the operator and registered relying parties to
// POST /v1/tokens. A relying-party credential opens nothing else of the
// operator API.
func (t *tokenService) authorize(a *api.API, r *http.Request) bool {
	if a.Authorized(r) {
		t.log.Info("token request", "by", "operator", "remote", r.RemoteAddr)
		return true
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return false
	}
	got := sha256.Sum256([]byte(tok))
	who := ""
	for _, c := range t.rps { // every entry compared: no timing hint of which matched
		if subtle.ConstantTimeCompare(got[:], c.hash[:]) == 1 {
			who = c.name
		}
	}
	if who == "" {
		return false
	}
	t.log.Info("token request", "by", "relying-party:"+who, "remote", r.RemoteAddr)
	return true
}

// loadRPCredentials reads a relying-party credentials file.
func loadRPCredentials(path string) ([]rpCredential, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tokens: relying-party credentials: %w", err)
	}
	defer f.Close()
	return parseRPCredentials(f, path)
}

// parseRPCredentials reads "name sha256:<64 hex>" lines ('#' comments). The
// hub keeps only hashes, so the file does not hold usable credentials.
func parseRPCredentials(r io.Reader, path string) ([]rpCredential, error) {
	var out []rpCredential
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 || !strings.HasPrefix(fields[1], "sha256:") {
			return nil, fmt.Errorf("tokens: %s:%d: want \"name sha256:<hex>\"", path, n)
		}
		b, err := hex.DecodeString(strings.TrimPrefix(fields[1], "sha256:"))
		if err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("tokens: %s:%d: not a sha256 hex digest", path, n)
		}
		if seen[fields[0]] {
			return nil, fmt.Errorf("tokens: %s:%d: relying party %q listed twice", path, n, fields[0])
		}
		seen[fields[0]] = true
		c := rpCredential{name: fields[0]}
		copy(c.hash[:], b)
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("tokens: %s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("tokens: %s lists no relying party", path)
	}
	return out, nil
}
