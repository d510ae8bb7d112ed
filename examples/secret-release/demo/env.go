package demo

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ratatouille/rat/examples/secret-release/release"
	"github.com/ratatouille/rat/hub/ear"
)

// Table is an in-memory ear.Source: the hub's current appraisal of each
// device, set by the demo in place of the hub's verifier.
type Table struct {
	mu sync.Mutex
	m  map[string]ear.Appraisal
}

// Appraise implements ear.Source.
func (t *Table) Appraise(_ context.Context, id string) (ear.Appraisal, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a, ok := t.m[id]
	if !ok {
		return ear.Appraisal{}, fmt.Errorf("device %s: %w", id, ear.ErrUnknownDevice)
	}
	return a, nil
}

// Set records a.
func (t *Table) Set(a ear.Appraisal) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]ear.Appraisal{}
	}
	t.m[a.DeviceID] = a
}

// Trusted is a fully verified appraisal of id, last verified now.
func Trusted(id string) ear.Appraisal {
	sb := true
	return ear.Appraisal{
		DeviceID: id, Group: "demo", Trusted: true, State: "TRUSTED",
		EKCertVerified: true, AKBound: true, IMAVerdict: ear.IMAApproved, SecureBoot: &sb,
		PolicyDigest: "sha256:9c1e0d", Release: "2026.12.1", LastVerified: time.Now(),
	}
}

// Audience is the service's audience in the demo.
const Audience = "secret-release"

// Env is a running hub + secret-release service on loopback.
type Env struct {
	CA         *CA
	Issuer     *ear.Issuer
	Source     *Table
	Verifier   *release.Verifier
	HubURL     string
	ServiceURL string
	Logs       *strings.Builder

	servers []*http.Server
	logMu   sync.Mutex
}

// Config adjusts Start.
type Config struct {
	KeyDir        string           // hub signing keys (required)
	IssuerOptions []ear.Option     // extra hub options
	VerifierNow   func() time.Time // the service's clock
	Secret        string
}

func serve(h http.Handler, tlsCfg *tls.Config) (*http.Server, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	srv := &http.Server{Handler: h, TLSConfig: tlsCfg, ReadHeaderTimeout: 5 * time.Second}
	scheme := "http"
	if tlsCfg != nil {
		scheme = "https"
		ln = tls.NewListener(ln, tlsCfg)
	}
	go srv.Serve(ln)
	return srv, scheme + "://" + ln.Addr().String(), nil
}

// Start brings up the hub endpoints and the service.
func Start(cfg Config) (*Env, error) {
	if cfg.KeyDir == "" {
		return nil, errors.New("demo: no key directory")
	}
	e := &Env{Source: &Table{}, Logs: &strings.Builder{}}
	var err error
	if e.CA, err = NewCA(); err != nil {
		return nil, err
	}
	if e.Issuer, err = ear.NewIssuer(ear.FileKeyStore{Dir: filepath.Join(cfg.KeyDir, "keys")}, cfg.IssuerOptions...); err != nil {
		return nil, err
	}
	// Operators and relying parties would authenticate to the hub; the
	// demo's devices get tokens through IssueForDevice (the MQTT side), so
	// the HTTP issuance endpoint refuses everyone.
	hub, hubURL, err := serve(ear.NewHandler(e.Issuer, e.Source, nil), nil)
	if err != nil {
		return nil, err
	}
	e.servers = append(e.servers, hub)
	e.HubURL = hubURL

	serverCert, err := e.CA.ServerCert()
	if err != nil {
		e.Close()
		return nil, err
	}
	e.Verifier = &release.Verifier{
		HubURL: e.HubURL, Issuer: ear.DefaultIssuer, Audience: Audience,
		Now: cfg.VerifierNow, Nonces: &release.Nonces{Now: cfg.VerifierNow},
	}
	secret := cfg.Secret
	if secret == "" {
		secret = "s3cr3t-for-attested-machines"
	}
	svc := &release.Server{
		Verifier: e.Verifier,
		Secret:   func(string) []byte { return []byte(secret) },
		Logf: func(f string, a ...any) {
			e.logMu.Lock()
			defer e.logMu.Unlock()
			fmt.Fprintf(e.Logs, f+"\n", a...)
		},
	}
	tlsCfg := &tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    e.CA.Pool,
		MinVersion:   tls.VersionTLS13,
	}
	s, u, err := serve(svc.Handler(), tlsCfg)
	if err != nil {
		e.Close()
		return nil, err
	}
	e.servers = append(e.servers, s)
	e.ServiceURL = u
	return e, nil
}

// StopHub stops the hub's HTTP endpoints (to show the service fails closed).
func (e *Env) StopHub() { e.servers[0].Close() }

// Close stops everything.
func (e *Env) Close() {
	for _, s := range e.servers {
		s.Close()
	}
	e.Issuer.Close()
}

// Device is a device's client of the service, holding its mTLS identity.
type Device struct {
	ID   string
	env  *Env
	http *http.Client
}

// Device returns a client for id with a client certificate naming it.
func (e *Env) Device(id string) (*Device, error) {
	cert, err := e.CA.ClientCert(id)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{cert}, RootCAs: e.CA.Pool, MinVersion: tls.VersionTLS13,
	}}
	return &Device{ID: id, env: e, http: &http.Client{Transport: tr, Timeout: 10 * time.Second}}, nil
}

// Nonce asks the service for a challenge.
func (d *Device) Nonce(ctx context.Context) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, d.env.ServiceURL+"/v1/nonce", nil)
	resp, err := d.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		Nonce, Error string
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&out); err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("nonce: %s: %s", resp.Status, out.Error)
	}
	return out.Nonce, nil
}

// Token asks the hub for its own token, as the device would over MQTT.
func (d *Device) Token(ctx context.Context, nonce, audience string) (ear.Token, error) {
	return d.env.Issuer.IssueForDevice(ctx, d.env.Source, d.ID, nonce, audience)
}

// Secret presents token; it returns the secret, or the refusal reason.
func (d *Device) Secret(ctx context.Context, token string) (secret string, refused string, err error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.env.ServiceURL+"/v1/secret", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := d.http.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	var out struct {
		Secret, Error string
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&out); err != nil {
		return "", "", err
	}
	if resp.StatusCode == http.StatusOK {
		return out.Secret, "", nil
	}
	if out.Error == "" {
		out.Error = resp.Status
	}
	return "", out.Error, nil
}

// Attempt is nonce -> token -> secret for one device.
func (d *Device) Attempt(ctx context.Context) (tok ear.Token, secret, refused string, err error) {
	n, err := d.Nonce(ctx)
	if err != nil {
		return ear.Token{}, "", "", err
	}
	if tok, err = d.Token(ctx, n, Audience); err != nil {
		return ear.Token{}, "", "", err
	}
	secret, refused, err = d.Secret(ctx, tok.JWT)
	return tok, secret, refused, err
}
