package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/lestrrat-go/jwx/v3/jwk"
	jxt "github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/ratatouille/rat/device/agent"
	"github.com/ratatouille/rat/device/imasim"
	"github.com/ratatouille/rat/device/imasrc"
	"github.com/ratatouille/rat/device/outbox"
	"github.com/ratatouille/rat/device/tpm"
	"github.com/ratatouille/rat/evidence/eventlog"
	"github.com/ratatouille/rat/evidence/ima"
	"github.com/ratatouille/rat/evidence/protocol"
	"github.com/ratatouille/rat/evidence/runtimepolicy"
	"github.com/ratatouille/rat/examples/secret-release/release"
	"github.com/ratatouille/rat/hub/api"
	"github.com/ratatouille/rat/hub/ear"
	"github.com/ratatouille/rat/hub/server"
	"github.com/ratatouille/rat/hub/store"
	"github.com/ratatouille/rat/hub/verifier"
)

const (
	testOperatorToken = "operator-token-for-tests-0123456789"
	testRPCredential  = "relying-party-credential-0123456789"
	testIssuer        = "test-hub"
)

// simDevice is a TPM simulator made to look like a real machine to the
// hub: the firmware extended PCRs 0-9 with a real Secure Boot event log, and
// NV holds an EK certificate issued by this test's manufacturer CA.
type simDevice struct {
	tp     *tpm.TPM
	evLog  []byte
	ekRoot *x509.CertPool
}

func newSimDevice(t *testing.T) *simDevice {
	t.Helper()
	sim, err := simulator.Get()
	if err != nil {
		t.Fatal(err)
	}
	tr := transport.FromReadWriteCloser(sim)
	tp := tpm.New(tr)
	t.Cleanup(func() { tp.Close() })
	raw, err := os.ReadFile("../../evidence/eventlog/testdata/secureboot-on.bin")
	if err != nil {
		t.Fatal(err)
	}
	l, err := eventlog.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range l.Events {
		dg, ok := e.Digest(eventlog.AlgSHA256)
		if e.Type == eventlog.EvNoAction || !ok || e.PCR > 9 {
			continue
		}
		if err := tp.Extend(e.PCR, dg); err != nil {
			t.Fatal(err)
		}
	}
	ek, err := tp.CreateEK()
	if err != nil {
		t.Fatal(err)
	}
	pool, der := issueEKCert(t, ek.PublicArea)
	if err := ek.Close(); err != nil {
		t.Fatal(err)
	}
	writeNV(t, tr, tpm.NVIndexRSAEKCert, der)
	return &simDevice{tp: tp, evLog: raw, ekRoot: pool}
}

// issueEKCert makes a manufacturer CA and an EK certificate for the EK's
// RSA key with the TCG EK EKU.
func issueEKCert(t *testing.T, ekPublicArea []byte) (*x509.CertPool, []byte) {
	t.Helper()
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](ekPublicArea)
	if err != nil {
		t.Fatal(err)
	}
	parms, err := pub.Parameters.RSADetail()
	if err != nil {
		t.Fatal(err)
	}
	n, err := pub.Unique.RSA()
	if err != nil {
		t.Fatal(err)
	}
	ekKey, err := tpm2.RSAPub(parms, n)
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test TPM Manufacturer Root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	ekTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "Test EK"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageKeyEncipherment,
		UnknownExtKeyUsage: []asn1.ObjectIdentifier{{2, 23, 133, 8, 1}}}
	ekDER, err := x509.CreateCertificate(rand.Reader, ekTmpl, ca, crypto.PublicKey(ekKey), caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, ekDER
}

// writeNV stores data at an NV index as a TPM manufacturer would.
func writeNV(t *testing.T, tr transport.TPM, index uint32, data []byte) {
	t.Helper()
	owner := tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	h := tpm2.TPMHandle(index)
	_, err := tpm2.NVDefineSpace{AuthHandle: owner, PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
		NVIndex: h, NameAlg: tpm2.TPMAlgSHA256, DataSize: uint16(len(data)),
		Attributes: tpm2.TPMANV{OwnerWrite: true, OwnerRead: true, AuthRead: true, NoDA: true},
	})}.Execute(tr)
	if err != nil {
		t.Fatalf("NV define 0x%08x: %v", index, err)
	}
	pub, err := tpm2.NVReadPublic{NVIndex: h}.Execute(tr)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(data); off += 512 {
		end := min(off+512, len(data))
		_, err := tpm2.NVWrite{AuthHandle: owner, NVIndex: tpm2.NamedHandle{Handle: h, Name: pub.NVName},
			Data: tpm2.TPM2BMaxNVBuffer{Buffer: data[off:end]}, Offset: uint16(off)}.Execute(tr)
		if err != nil {
			t.Fatalf("NV write 0x%08x at %d: %v", index, off, err)
		}
		// NVReadPublic's name changes once the index is written.
		if pub, err = (tpm2.NVReadPublic{NVIndex: h}).Execute(tr); err != nil {
			t.Fatal(err)
		}
	}
}

// testHubWithTokens is rat-hub serve in-process: store, hub with its
// embedded broker, HTTP API, and the token service configured and mounted
// exactly as the serve hooks do.
type testHubWithTokens struct {
	srv  *server.Server
	st   store.Store
	http *httptest.Server
	ts   *tokenService
}

func startTokenHub(t *testing.T, dir string, roots *x509.CertPool) *testHubWithTokens {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.OpenBolt(filepath.Join(dir, "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(testRPCredential))
	rpFile := filepath.Join(dir, "rp-credentials")
	if err := os.WriteFile(rpFile, []byte("# relying parties\nvault sha256:"+hex.EncodeToString(sum[:])+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ts, err := newTokenService(tokenOptions{Lifetime: time.Minute, MaxAge: time.Minute, KeyDir: filepath.Join(dir, "ear-keys"),
		DBPath: filepath.Join(dir, "ear-tokens.db"), Issuer: testIssuer, Audiences: []string{"rp-mqtt", "spiffe://example.org"},
		RPFile: rpFile}, st, "default", quiet)
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{Store: st, Verifier: verifier.Config{EKRoots: roots}, EmbeddedAddr: "127.0.0.1:0",
		AllowUnsignedPoliciesUnsafe: true, StaleAfter: time.Hour, Log: quiet}
	if err := ts.configure(&cfg); err != nil {
		t.Fatal(err)
	}
	if err := ts.configure(&cfg); err == nil {
		t.Fatal("a second token issuer was accepted")
	}
	srv, err := server.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	a, err := api.New(srv, testOperatorToken)
	if err != nil {
		t.Fatal(err)
	}
	ts.mount(a)
	h := &testHubWithTokens{srv: srv, st: st, http: httptest.NewServer(a), ts: ts}
	t.Cleanup(func() { h.http.Close(); srv.Close(); ts.Close(); st.Close() })
	return h
}

// postToken calls POST /v1/tokens with the given bearer ("" for none).
func (h *testHubWithTokens) postToken(t *testing.T, bearer, device, nonce, aud string) (int, ear.TokenResponse) {
	t.Helper()
	body, _ := json.Marshal(ear.TokenRequest{DeviceID: device, Nonce: nonce, Audience: aud})
	req, _ := http.NewRequest(http.MethodPost, h.http.URL+"/v1/tokens", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out ear.TokenResponse
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, out
}

func (h *testHubWithTokens) get(t *testing.T, path, bearer string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.http.URL+path, nil)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (h *testHubWithTokens) tokenStatus(t *testing.T, id string) string {
	t.Helper()
	code, b := h.get(t, "/v1/tokens/"+id+"/status", "")
	if code != http.StatusOK {
		t.Fatalf("status of %s: %d %s", id, code, b)
	}
	var st ear.TokenStatus
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st.Status
}

// verifyGeneric checks tok as any relying party with a generic JOSE library
// would: the hub's JWKS over HTTP (no credentials), jwx's signature and
// registered-claim checks, then the EAR claims from the verified payload.
func (h *testHubWithTokens) verifyGeneric(t *testing.T, tok, sub, aud, nonce string) map[string]any {
	t.Helper()
	code, b := h.get(t, "/.well-known/jwks.json", "")
	if code != http.StatusOK {
		t.Fatalf("jwks: %d %s", code, b)
	}
	set, err := jwk.Parse(b)
	if err != nil {
		t.Fatalf("jwks: %v", err)
	}
	if _, err := jxt.Parse([]byte(tok), jxt.WithKeySet(set), jxt.WithIssuer(testIssuer), jxt.WithAudience(aud),
		jxt.WithSubject(sub)); err != nil {
		t.Fatalf("token does not verify against the hub's JWKS: %v", err)
	}
	parts := strings.Split(tok, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	if claims["eat_nonce"] != nonce {
		t.Fatalf("eat_nonce %v, want %q", claims["eat_nonce"], nonce)
	}
	return claims
}

func tpmSubmod(t *testing.T, claims map[string]any) map[string]any {
	t.Helper()
	subs, _ := claims["submods"].(map[string]any)
	s, _ := subs[ear.SubmodName].(map[string]any)
	if s == nil {
		t.Fatalf("no %q submodule: %v", ear.SubmodName, claims)
	}
	return s
}

func waitStore(t *testing.T, st store.Store, key, want string) *store.Device {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		d, err := st.Device(key)
		if err == nil && d.State == want {
			return d
		}
		if time.Now().After(deadline) {
			if d != nil {
				t.Fatalf("%s is %s (%s), want %s", key, d.State, d.Reason, want)
			}
			t.Fatalf("%s: %v, want %s", key, err, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestHubTokens runs the real agent on the TPM simulator (EK certificate
// from a manufacturer CA the hub trusts, real Secure Boot event log) against
// the hub with tokens on, and checks the whole issue-9 loop through the
// hub's own endpoints: an affirming token over HTTP that verifies against
// the JWKS with a generic library and satisfies the example relying party;
// a file outside the policy makes the device UNTRUSTED, its tokens are
// revoked and new ones contraindicated; a new policy makes it TRUSTED and
// affirming again (earlier tokens stay revoked); and the device asks for its
// own token over MQTT.
func TestHubTokens(t *testing.T) {
	dir := t.TempDir()
	dev := newSimDevice(t)
	h := startTokenHub(t, dir, dev.ekRoot)

	logPath := filepath.Join(dir, "ima.bin")
	ms, err := imasim.Open(dev.tp, logPath)
	if err != nil {
		t.Fatal(err)
	}
	approved := filepath.Join(dir, "approved")
	if err := os.WriteFile(approved, []byte("#!/bin/sh\necho fine\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := ms.MeasureFile(approved); err != nil {
		t.Fatal(err)
	}
	ob, err := outbox.Open(filepath.Join(dir, "outbox.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ag, err := agent.New(agent.Config{DeviceID: "edge", Fleet: "default", Group: "g", Broker: h.srv.BrokerURL(), TPM: dev.tp,
		IMA: imasrc.NewFile(logPath), Outbox: ob, BootID: func() (string, error) { return "boot-1", nil },
		EventLog: func() ([]byte, error) { return dev.evLog, nil }, Release: func() string { return "2026.12.1" },
		Baseline: true, Poll: 20 * time.Millisecond, Heartbeat: 100 * time.Millisecond, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer ag.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ag.Run(ctx) }()
	stopAgent := func() {
		if cancel != nil {
			cancel()
			<-done
			cancel = nil
		}
	}
	defer stopAgent()

	const key = "default/edge"
	d := waitStore(t, h.st, key, store.Trusted)
	if !d.EKVerified || d.TOFU || !d.EventLogVerified || d.SecureBoot == nil || !*d.SecureBoot {
		t.Fatalf("device not fully verified: ek %v tofu %v eventlog %v secureboot %v", d.EKVerified, d.TOFU, d.EventLogVerified, d.SecureBoot)
	}

	// 1. An operator gets an affirming token over HTTP; it verifies against
	// the JWKS with a generic library and carries the full trust vector.
	const nonce1 = "operator-nonce-0001"
	code, t1 := h.postToken(t, testOperatorToken, "edge", nonce1, "secret-release")
	if code != http.StatusOK || t1.Status != "affirming" {
		t.Fatalf("POST /v1/tokens: %d %s %q", code, t1.Status, t1.Reasons)
	}
	claims := h.verifyGeneric(t, t1.Token, "edge", "secret-release", nonce1)
	sm := tpmSubmod(t, claims)
	if sm["ear.status"] != "affirming" {
		t.Fatalf("ear.status %v", sm["ear.status"])
	}
	tv, _ := sm["ear.trustworthiness-vector"].(map[string]any)
	for _, c := range []string{"instance-identity", "hardware", "executables", "configuration"} {
		if tv[c] != float64(2) {
			t.Errorf("trust vector %s = %v, want 2", c, tv[c])
		}
	}
	pol, err := h.st.ActivePolicy("g")
	if err != nil {
		t.Fatal(err)
	}
	if want := pol.Digest + "@2026.12.1"; sm["ear.appraisal-policy-id"] != want {
		t.Errorf("appraisal policy id %v, want %s", sm["ear.appraisal-policy-id"], want)
	}
	if claims["rat.requester"] != ear.RequesterRelyingParty || claims["rat.state"] != store.Trusted || claims["rat.group"] != "g" {
		t.Errorf("rat claims: %v %v %v", claims["rat.requester"], claims["rat.state"], claims["rat.group"])
	}
	if s := h.tokenStatus(t, t1.ID); s != ear.TokenActive {
		t.Fatalf("fresh token status %s", s)
	}

	// Who may ask, and for what.
	for _, tc := range []struct {
		name, bearer, device string
		want                 int
	}{
		{"no credential", "", "edge", http.StatusUnauthorized},
		{"wrong credential", "not-a-credential-0123456789", "edge", http.StatusUnauthorized},
		{"relying-party credential", testRPCredential, "edge", http.StatusOK},
		{"unknown device", testOperatorToken, "ghost", http.StatusNotFound},
		{"fleet-qualified id (tokens name bare ids)", testOperatorToken, "default/edge", http.StatusNotFound},
		{"short nonce", testOperatorToken, "edge", http.StatusBadRequest},
	} {
		n := "table-nonce-0001"
		if tc.name == "short nonce" {
			n = "short"
		}
		if code, _ := h.postToken(t, tc.bearer, tc.device, n, "secret-release"); code != tc.want {
			t.Errorf("%s: POST /v1/tokens = %d, want %d", tc.name, code, tc.want)
		}
	}
	if code, _ := h.get(t, "/v1/devices", testRPCredential); code != http.StatusUnauthorized {
		t.Errorf("a relying-party credential opened the operator API: %d", code)
	}

	// The example relying party accepts a token for its own nonce; a
	// second one is held back to present after the revocation.
	rp := &release.Verifier{HubURL: h.http.URL, Issuer: testIssuer, Audience: "secret-release", Nonces: &release.Nonces{}}
	rpToken := func() ear.TokenResponse {
		n, err := rp.Nonces.New("edge")
		if err != nil {
			t.Fatal(err)
		}
		code, tr := h.postToken(t, testRPCredential, "edge", n, "secret-release")
		if code != http.StatusOK {
			t.Fatalf("POST /v1/tokens: %d", code)
		}
		return tr
	}
	if _, err := rp.Verify(context.Background(), rpToken().Token, "edge"); err != nil {
		t.Fatalf("relying party refuses a TRUSTED device's token: %v", err)
	}
	held := rpToken()

	// 2. A file outside the policy runs: UNTRUSTED, tokens revoked, new
	// tokens contraindicated, the relying party refuses both.
	evil := filepath.Join(dir, "evil")
	if err := os.WriteFile(evil, []byte("#!/bin/sh\nrm -rf /\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := ms.MeasureFile(evil); err != nil {
		t.Fatal(err)
	}
	waitStore(t, h.st, key, store.Untrusted)
	// The revocation runs on the device's worker right after the state is
	// stored; give it that moment.
	for deadline := time.Now().Add(5 * time.Second); h.tokenStatus(t, t1.ID) != ear.TokenRevoked; {
		if time.Now().After(deadline) {
			t.Fatalf("token %s still %s after UNTRUSTED", t1.ID, h.tokenStatus(t, t1.ID))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if s := h.tokenStatus(t, held.ID); s != ear.TokenRevoked {
		t.Errorf("held token %s", s)
	}
	if _, err := rp.Verify(context.Background(), held.Token, "edge"); !errors.Is(err, release.ErrRevoked) {
		t.Errorf("relying party on a revoked token: %v, want ErrRevoked", err)
	}
	bad := rpToken()
	if bad.Status != "contraindicated" || !strings.Contains(strings.Join(bad.Reasons, ";"), "executables: unrecognized_rt") {
		t.Fatalf("token after UNTRUSTED: %s %q", bad.Status, bad.Reasons)
	}
	badClaims := h.verifyGeneric(t, bad.Token, "edge", "secret-release", claimString(t, bad.Token, "eat_nonce"))
	if badClaims["rat.state"] != store.Untrusted || tpmSubmod(t, badClaims)["ear.status"] != "contraindicated" {
		t.Errorf("claims after UNTRUSTED: %v", badClaims)
	}
	if _, err := rp.Verify(context.Background(), bad.Token, "edge"); !errors.Is(err, release.ErrNotAffirm) {
		t.Errorf("relying party on a contraindicated token: %v, want ErrNotAffirm", err)
	}
	// The history entry is written by the revocation subscriber, just
	// after the status flips.
	for deadline := time.Now().Add(5 * time.Second); !hasRevocationEvent(t, h.st, key); {
		if time.Now().After(deadline) {
			t.Fatal("the device history does not record the token revocation")
		}
		time.Sleep(5 * time.Millisecond)
	}

	// 3. The operator approves the file (a policy from the device's own
	// log): TRUSTED again, so affirming tokens again; old ones stay revoked.
	entries, err := ima.ParseBinary(mustRead(t, logPath))
	if err != nil {
		t.Fatal(err)
	}
	p, err := runtimepolicy.FromEntries(entries)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.srv.SetPolicy("g", doc, nil, "test", ""); err != nil {
		t.Fatal(err)
	}
	waitStore(t, h.st, key, store.Trusted)
	if again := rpToken(); again.Status != "affirming" {
		t.Fatalf("TRUSTED again, token %s %q", again.Status, again.Reasons)
	}
	if s := h.tokenStatus(t, t1.ID); s != ear.TokenRevoked {
		t.Errorf("token revoked earlier is %s after the device was reinstated", s)
	}

	// 4. The device asks for its own token over MQTT. The agent steps
	// aside so this client can use the device's MQTT identity.
	stopAgent()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(h.srv.BrokerURL()).SetClientID("edge").SetUsername("edge").SetCleanSession(true))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt connect: %v", tok.Error())
	}
	defer c.Disconnect(50)
	replies := make(chan []byte, 4)
	if tok := c.Subscribe(protocol.DownTopic("default", "edge", protocol.KindTokenResp), 1, func(_ paho.Client, m paho.Message) {
		replies <- append([]byte(nil), m.Payload()...)
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	ask := func(nonce, aud string) protocol.TokenResponse {
		t.Helper()
		b, err := protocol.Marshal(&protocol.TokenRequest{Nonce: []byte(nonce), Audience: aud})
		if err != nil {
			t.Fatal(err)
		}
		if tok := c.Publish(protocol.UpTopic("default", "edge", protocol.KindToken), 1, false, b); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
		select {
		case raw := <-replies:
			var r protocol.TokenResponse
			if err := protocol.Unmarshal(raw, &r); err != nil {
				t.Fatal(err)
			}
			return r
		case <-time.After(10 * time.Second):
			t.Fatal("no token response over MQTT")
		}
		return protocol.TokenResponse{}
	}
	const mqttNonce = "mqtt-nonce-from-rp-0001"
	r := ask(mqttNonce, "")
	if r.Token == "" || r.Reason != "" {
		t.Fatalf("device token over MQTT: %+v", r)
	}
	mc := h.verifyGeneric(t, r.Token, "edge", "rp-mqtt", mqttNonce) // the default audience
	if mc["rat.requester"] != ear.RequesterDevice || tpmSubmod(t, mc)["ear.status"] != "affirming" {
		t.Errorf("device token claims: %v", mc)
	}
	if r := ask(mqttNonce, "spiffe://example.org"); r.Token == "" {
		t.Errorf("listed audience refused: %s", r.Reason)
	}
	for _, tc := range []struct{ name, nonce, aud, reason string }{
		{"unlisted audience", mqttNonce, "some-other-rp", "not one the hub issues"},
		{"short nonce", "short", "", "nonce must be"},
		{"non-text nonce", "nonce\x00with-nul", "", "printable ASCII"},
	} {
		if r := ask(tc.nonce, tc.aud); r.Token != "" || !strings.Contains(r.Reason, tc.reason) {
			t.Errorf("%s: token %v, reason %q, want it to say %q", tc.name, r.Token != "", r.Reason, tc.reason)
		}
	}
}

func hasRevocationEvent(t *testing.T, st store.Store, key string) bool {
	t.Helper()
	evs, err := st.Events(key, 50)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Kind == "action" && strings.Contains(e.Detail, "attestation-result tokens revoked") {
			return true
		}
	}
	return false
}

// claimString reads one claim of a token without verifying it (the caller
// verifies it right after).
func claimString(t *testing.T, tok, name string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	s, _ := m[name].(string)
	return s
}

func mustRead(t *testing.T, p string) *bytes.Reader {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(b)
}

func TestLoadRPCredentials(t *testing.T) {
	sum := sha256.Sum256([]byte("x"))
	good := "vault sha256:" + hex.EncodeToString(sum[:])
	for _, tc := range []struct {
		name, body string
		ok         bool
	}{
		{"one", "# comment\n\n" + good + "\n", true},
		{"empty", "# nothing\n", false},
		{"plain credential instead of a hash", "vault s3cret\n", false},
		{"short digest", "vault sha256:abcd\n", false},
		{"duplicate name", good + "\n" + good + "\n", false},
		{"three fields", good + " extra\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "rp")
			if err := os.WriteFile(p, []byte(tc.body), 0o600); err != nil {
				t.Fatal(err)
			}
			rps, err := loadRPCredentials(p)
			if (err == nil) != tc.ok {
				t.Fatalf("err %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && (len(rps) != 1 || rps[0].name != "vault" || rps[0].hash != sum) {
				t.Errorf("credentials %+v", rps)
			}
		})
	}
}

// TestTokenServiceRestart: the hub's token state lives in its data
// directory — after a restart the signing key is the same, a revoked
// token is still revoked and the device still gets no affirming token.
func TestTokenServiceRestart(t *testing.T) {
	dir := t.TempDir()
	st, err := store.OpenBolt(filepath.Join(dir, "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	d := &store.Device{Key: "default/edge", ID: "edge", Fleet: "default", Group: "g", State: store.Trusted, AKPublic: []byte{1},
		PolicyDigest: "sha256:ab", LastVerified: time.Now()}
	if err := st.Save(d, nil, 0, nil); err != nil {
		t.Fatal(err)
	}
	o := tokenOptions{Lifetime: time.Minute, MaxAge: time.Minute, KeyDir: filepath.Join(dir, "ear-keys"),
		DBPath: filepath.Join(dir, "ear-tokens.db"), Issuer: testIssuer}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	open := func() *tokenService {
		ts, err := newTokenService(o, st, "default", quiet)
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}
	ts := open()
	kid := ts.issuer.ActiveKeyID()
	tok, err := ts.issuer.Issue(context.Background(), ts.src, "edge", "restart-nonce-01", "rp")
	if err != nil {
		t.Fatal(err)
	}
	d.State = store.Untrusted
	if err := st.Save(d, nil, 0, nil); err != nil {
		t.Fatal(err)
	}
	ts.revoke("default/edge")
	ts.Close()

	ts = open()
	defer ts.Close()
	if got := ts.issuer.ActiveKeyID(); got != kid {
		t.Errorf("signing key %s after restart, was %s", got, kid)
	}
	if s, ok := ts.issuer.Status(tok.ID); !ok || s.Status != ear.TokenRevoked {
		t.Errorf("token after restart: %+v %v", s, ok)
	}
	if !ts.issuer.Revoked("edge") {
		t.Error("device revocation forgotten by the restart")
	}
}
