package ear

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	jxt "github.com/lestrrat-go/jwx/v3/jwt"
	"github.com/ratatouille/rat/evidence/failure"
	vear "github.com/veraison/ear"
)

// tableSource is an in-memory Source: the hub's store behind the interface.
type tableSource struct {
	mu sync.Mutex
	m  map[string]Appraisal
}

func (s *tableSource) Appraise(_ context.Context, id string) (Appraisal, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.m[id]
	if !ok {
		return Appraisal{}, fmt.Errorf("device %s: %w", id, ErrUnknownDevice)
	}
	return a, nil
}

func (s *tableSource) set(a Appraisal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[a.DeviceID] = a
}

func boolp(b bool) *bool { return &b }

func goodAppraisal(id string, now time.Time) Appraisal {
	return Appraisal{
		DeviceID: id, Group: "edge", Trusted: true, State: "TRUSTED",
		EKCertVerified: true, AKBound: true, IMAVerdict: IMAApproved, SecureBoot: boolp(true),
		PolicyDigest: "sha256:4f2a", Release: "2026.12.1", LastVerified: now.Add(-10 * time.Second),
	}
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newTestIssuer(t *testing.T, opts ...Option) (*Issuer, *tableSource, *clock) {
	t.Helper()
	c := &clock{t: time.Now().UTC().Truncate(time.Second)}
	iss, err := NewIssuer(FileKeyStore{Dir: filepath.Join(t.TempDir(), "keys")}, append([]Option{WithClock(c.now)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	src := &tableSource{m: map[string]Appraisal{}}
	src.set(goodAppraisal("dev-1", c.now()))
	return iss, src, c
}

const testNonce = "rp-nonce-0123456789"

func TestJudge(t *testing.T) {
	now := time.Now()
	mod := func(f func(*Appraisal)) Appraisal { a := goodAppraisal("d", now); f(&a); return a }
	cases := []struct {
		name    string
		a       Appraisal
		revoked bool
		status  vear.TrustTier
		tv      vear.TrustVector
	}{
		{"all verified", goodAppraisal("d", now), false, vear.TrustTierAffirming,
			vear.TrustVector{InstanceIdentity: 2, Hardware: 2, Executables: 2, Configuration: 2}},
		{"tofu ek makes no hardware claim", mod(func(a *Appraisal) { a.EKCertVerified, a.TOFU = false, true }), false, vear.TrustTierWarning,
			vear.TrustVector{InstanceIdentity: 2, Hardware: 0, Executables: 2, Configuration: 2}},
		{"ak not bound", mod(func(a *Appraisal) { a.AKBound = false }), false, vear.TrustTierWarning,
			vear.TrustVector{InstanceIdentity: 0, Hardware: 2, Executables: 2, Configuration: 2}},
		{"unrecognized executable", mod(func(a *Appraisal) { a.IMAVerdict = IMAUnrecognized }), false, vear.TrustTierWarning,
			vear.TrustVector{InstanceIdentity: 2, Hardware: 2, Executables: vear.UnrecognizedRuntimeClaim, Configuration: 2}},
		{"contraindicated executable", mod(func(a *Appraisal) { a.IMAVerdict = IMAContraindicated }), false, vear.TrustTierContraindicated,
			vear.TrustVector{InstanceIdentity: 2, Hardware: 2, Executables: vear.ContraindicatedRuntimeClaim, Configuration: 2}},
		{"no ima", mod(func(a *Appraisal) { a.IMAVerdict = IMANone }), false, vear.TrustTierWarning,
			vear.TrustVector{InstanceIdentity: 2, Hardware: 2, Configuration: 2}},
		{"secure boot off", mod(func(a *Appraisal) { a.SecureBoot = boolp(false) }), false, vear.TrustTierWarning,
			vear.TrustVector{InstanceIdentity: 2, Hardware: 2, Executables: 2, Configuration: vear.UnsafeConfigClaim}},
		{"secure boot unknown", mod(func(a *Appraisal) { a.SecureBoot = nil }), false, vear.TrustTierWarning,
			vear.TrustVector{InstanceIdentity: 2, Hardware: 2, Executables: 2}},
		{"stale quote", mod(func(a *Appraisal) { a.LastVerified = now.Add(-time.Hour) }), false, vear.TrustTierWarning,
			vear.TrustVector{InstanceIdentity: 2, Hardware: 2, Executables: 2, Configuration: 2}},
		{"never verified", mod(func(a *Appraisal) { a.LastVerified = time.Time{} }), false, vear.TrustTierWarning,
			vear.TrustVector{InstanceIdentity: 2, Hardware: 2, Executables: 2, Configuration: 2}},
		{"future quote", mod(func(a *Appraisal) { a.LastVerified = now.Add(time.Hour) }), false, vear.TrustTierWarning,
			vear.TrustVector{InstanceIdentity: 2, Hardware: 2, Executables: 2, Configuration: 2}},
		{"hub untrusted with clean claims", mod(func(a *Appraisal) { a.Trusted, a.State = false, "UNTRUSTED" }), false, vear.TrustTierContraindicated,
			vear.TrustVector{InstanceIdentity: 2, Hardware: 2, Executables: 2, Configuration: 2}},
		{"enrolling", mod(func(a *Appraisal) { a.Trusted, a.State = false, "ENROLLING" }), false, vear.TrustTierWarning,
			vear.TrustVector{InstanceIdentity: 2, Hardware: 2, Executables: 2, Configuration: 2}},
		{"trusted flag without TRUSTED state", mod(func(a *Appraisal) { a.State = "STALE" }), false, vear.TrustTierWarning,
			vear.TrustVector{InstanceIdentity: 2, Hardware: 2, Executables: 2, Configuration: 2}},
		{"no policy", mod(func(a *Appraisal) { a.PolicyDigest = "" }), false, vear.TrustTierWarning,
			vear.TrustVector{InstanceIdentity: 2, Hardware: 2, Executables: 2, Configuration: 2}},
		{"revoked", goodAppraisal("d", now), true, vear.TrustTierContraindicated,
			vear.TrustVector{InstanceIdentity: 2, Hardware: 2, Executables: 2, Configuration: 2}},
		{"quote signature failure overrides AKBound", mod(func(a *Appraisal) { a.Failures = []string{failure.QuoteInvalidSignature} }), false, vear.TrustTierContraindicated,
			vear.TrustVector{InstanceIdentity: vear.CryptoValidationFailedClaim, Hardware: 2, Executables: 2, Configuration: 2}},
		{"invalid hash beats unrecognized", mod(func(a *Appraisal) {
			a.IMAVerdict = IMAUnrecognized
			a.Failures = []string{failure.IMANotInAllowlist, failure.IMAInvalidHash}
		}), false, vear.TrustTierContraindicated,
			vear.TrustVector{InstanceIdentity: 2, Hardware: 2, Executables: vear.ContraindicatedRuntimeClaim, Configuration: 2}},
		{"ek cert failure", mod(func(a *Appraisal) { a.EKCertVerified = false; a.Failures = []string{failure.EKCertInvalid} }), false, vear.TrustTierContraindicated,
			vear.TrustVector{InstanceIdentity: 2, Hardware: vear.UnrecognizedHardwareClaim, Executables: 2, Configuration: 2}},
		{"measured boot mismatch", mod(func(a *Appraisal) { a.Failures = []string{failure.MeasuredBootPolicy} }), false, vear.TrustTierContraindicated,
			vear.TrustVector{InstanceIdentity: 2, Hardware: 2, Executables: 2, Configuration: vear.UnsupportableConfigClaim}},
		{"unmapped failure id keeps claims", mod(func(a *Appraisal) { a.Failures = []string{failure.QuoteReboot} }), false, vear.TrustTierAffirming,
			vear.TrustVector{InstanceIdentity: 2, Hardware: 2, Executables: 2, Configuration: 2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			j := Judge(tc.a, now, 5*time.Minute, tc.revoked)
			if j.Status != tc.status {
				t.Errorf("status %v, want %v (reasons %q)", j.Status, tc.status, j.Reasons)
			}
			if j.Vector != tc.tv {
				t.Errorf("vector %+v, want %+v", j.Vector, tc.tv)
			}
			if (j.Status == vear.TrustTierAffirming) != (len(j.Reasons) == 0) {
				t.Errorf("reasons %q with status %v", j.Reasons, j.Status)
			}
		})
	}
}

func TestPolicyID(t *testing.T) {
	for _, tc := range []struct{ d, r, want string }{
		{"sha256:ab", "2026.12.1", "sha256:ab@2026.12.1"},
		{"sha256:ab", "", "sha256:ab"},
		{"", "2026.12.1", ""},
	} {
		if got := PolicyID(Appraisal{PolicyDigest: tc.d, Release: tc.r}); got != tc.want {
			t.Errorf("PolicyID(%q,%q) = %q, want %q", tc.d, tc.r, got, tc.want)
		}
	}
}

// fetchJWKS gets the JWKS over HTTP and parses it with jwx, as a relying
// party using a generic JOSE library would.
func fetchJWKS(t *testing.T, url string) jwk.Set {
	t.Helper()
	resp, err := http.Get(url + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("jwks: %s %s", resp.Status, b)
	}
	set, err := jwk.Parse(b)
	if err != nil {
		t.Fatalf("jwks does not parse: %v\n%s", err, b)
	}
	return set
}

func TestTokenVerifiesWithGenericLibrary(t *testing.T) {
	iss, src, _ := newTestIssuer(t)
	srv := httptest.NewServer(NewHandler(iss, src, func(*http.Request) bool { return true }))
	defer srv.Close()

	tok, err := iss.Issue(context.Background(), src, "dev-1", testNonce, "secret-release")
	if err != nil {
		t.Fatal(err)
	}
	if tok.Status != "affirming" {
		t.Fatalf("status %s, reasons %q", tok.Status, tok.Reasons)
	}
	set := fetchJWKS(t, srv.URL)
	parsed, err := jxt.Parse([]byte(tok.JWT), jxt.WithKeySet(set), jxt.WithAudience("secret-release"),
		jxt.WithIssuer(DefaultIssuer), jxt.WithSubject("dev-1"))
	if err != nil {
		t.Fatalf("jwx refuses the token: %v", err)
	}
	if id, _ := parsed.JwtID(); id != tok.ID {
		t.Errorf("jti %q, want %q", id, tok.ID)
	}
	exp, _ := parsed.Expiration()
	iat, _ := parsed.IssuedAt()
	if d := exp.Sub(iat); d != DefaultLifetime {
		t.Errorf("lifetime %s, want %s", d, DefaultLifetime)
	}

	// The same token is a valid EAR for the veraison/ear decoder.
	k, ok := set.LookupKeyID(iss.ActiveKeyID())
	if !ok {
		t.Fatal("active key not in JWKS")
	}
	var pub ecdsa.PublicKey
	if err := jwk.Export(k, &pub); err != nil {
		t.Fatal(err)
	}
	var ar vear.AttestationResult
	if err := ar.Verify([]byte(tok.JWT), jwa.ES256(), &pub); err != nil {
		t.Fatalf("ear.Verify: %v", err)
	}
	a := ar.Submods[SubmodName]
	if a == nil || *a.Status != vear.TrustTierAffirming {
		t.Fatalf("submod %q: %+v", SubmodName, a)
	}
	if *ar.Nonce != testNonce {
		t.Errorf("nonce %q", *ar.Nonce)
	}
	if a.AppraisalPolicyID == nil || *a.AppraisalPolicyID != "sha256:4f2a@2026.12.1" {
		t.Errorf("policy id %v", a.AppraisalPolicyID)
	}
	want := vear.TrustVector{InstanceIdentity: 2, Hardware: 2, Executables: 2, Configuration: 2}
	if *a.TrustVector != want {
		t.Errorf("trust vector %+v", *a.TrustVector)
	}

	// A token signed by a key not in the JWKS is refused.
	other, _, _ := newTestIssuer(t)
	bad, err := other.Issue(context.Background(), src, "dev-1", testNonce, "secret-release")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jxt.Parse([]byte(bad.JWT), jxt.WithKeySet(set)); err == nil {
		t.Error("token of another hub verified against this JWKS")
	}
}

func TestIssueRefusesBadRequests(t *testing.T) {
	iss, src, _ := newTestIssuer(t)
	cases := []struct{ name, dev, nonce, aud string }{
		{"short nonce", "dev-1", "1234567", "rp"},
		{"long nonce", "dev-1", strings.Repeat("n", 89), "rp"},
		{"no audience", "dev-1", testNonce, ""},
		{"no device", "", testNonce, "rp"},
		{"space in nonce", "dev-1", "nonce with space", "rp"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := iss.Issue(context.Background(), src, tc.dev, tc.nonce, tc.aud); err == nil {
				t.Fatal("issued")
			}
		})
	}
	if _, err := iss.Issue(context.Background(), src, "dev-unknown", testNonce, "rp"); err == nil {
		t.Error("issued for an unknown device")
	}
}

// wrongSource answers for another device than asked.
type wrongSource struct{}

func (wrongSource) Appraise(context.Context, string) (Appraisal, error) {
	return goodAppraisal("someone-else", time.Now()), nil
}

func TestIssueRefusesMismatchedSource(t *testing.T) {
	iss, _, _ := newTestIssuer(t)
	if _, err := iss.Issue(context.Background(), wrongSource{}, "dev-1", testNonce, "rp"); err == nil {
		t.Fatal("signed an appraisal of another device")
	}
}

func TestRotationKeepsLiveTokens(t *testing.T) {
	iss, src, c := newTestIssuer(t)
	srv := httptest.NewServer(NewHandler(iss, src, nil))
	defer srv.Close()
	ctx := context.Background()

	t1, err := iss.Issue(ctx, src, "dev-1", testNonce, "rp")
	if err != nil {
		t.Fatal(err)
	}
	k1 := iss.ActiveKeyID()
	if err := iss.Rotate(); err != nil {
		t.Fatal(err)
	}
	k2 := iss.ActiveKeyID()
	if k1 == k2 {
		t.Fatal("rotation kept the key id")
	}
	t2, err := iss.Issue(ctx, src, "dev-1", testNonce, "rp")
	if err != nil {
		t.Fatal(err)
	}
	set := fetchJWKS(t, srv.URL)
	if set.Len() != 2 {
		t.Fatalf("jwks has %d keys, want 2", set.Len())
	}
	for _, tok := range []Token{t1, t2} {
		if _, err := jxt.Parse([]byte(tok.JWT), jxt.WithKeySet(set), jxt.WithClock(jxt.ClockFunc(c.now))); err != nil {
			t.Errorf("token %s: %v", tok.ID, err)
		}
	}
	// Once every token of the old key has expired, the key leaves the JWKS
	// and its file is deleted.
	c.add(DefaultLifetime + time.Minute)
	set = fetchJWKS(t, srv.URL)
	if _, ok := set.LookupKeyID(k1); ok || set.Len() != 1 {
		t.Errorf("retired key still published after its tokens expired (%d keys)", set.Len())
	}
}

func TestRotateEvery(t *testing.T) {
	iss, src, c := newTestIssuer(t, WithRotateEvery(time.Hour))
	k1 := iss.ActiveKeyID()
	c.add(2 * time.Hour)
	if _, err := iss.Issue(context.Background(), src, "dev-1", testNonce, "rp"); err != nil {
		t.Fatal(err)
	}
	if iss.ActiveKeyID() == k1 {
		t.Error("key older than the rotation interval still signs")
	}
}

func TestFileKeyStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	ks := FileKeyStore{Dir: dir}
	iss, err := NewIssuer(ks)
	if err != nil {
		t.Fatal(err)
	}
	if err := iss.Rotate(); err != nil {
		t.Fatal(err)
	}
	active := iss.ActiveKeyID()
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Fatalf("%d key files, want 2", len(ents))
	}
	for _, e := range ents {
		info, _ := e.Info()
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %o, want 600", e.Name(), info.Mode().Perm())
		}
	}
	if info, _ := os.Stat(dir); info.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %o", info.Mode().Perm())
	}
	// A restart keeps the active key and the retired one.
	again, err := NewIssuer(ks)
	if err != nil {
		t.Fatal(err)
	}
	if again.ActiveKeyID() != active || len(again.JWKS().Keys) != 2 {
		t.Errorf("restart: active %s (want %s), %d keys", again.ActiveKeyID(), active, len(again.JWKS().Keys))
	}
	// A key file others can read is refused, not used.
	p := filepath.Join(dir, active+".pem")
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := NewIssuer(ks); err == nil {
		t.Error("loaded a world-readable key")
	}
	os.Chmod(p, 0o600)
	// A damaged key file is an error, never silently skipped.
	if err := os.WriteFile(p, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewIssuer(ks); err == nil {
		t.Error("loaded a damaged key file")
	}
}

func TestKeyFileRoundTrip(t *testing.T) {
	k, err := NewSigningKey(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	k.Retired = k.Created.Add(time.Hour)
	k.KeepUntil = k.Retired.Add(5 * time.Minute)
	b, err := MarshalKeyFile(k)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseKeyFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != k.ID || !got.Created.Equal(k.Created) || !got.Retired.Equal(k.Retired) || !got.KeepUntil.Equal(k.KeepUntil) || !got.Private.Equal(k.Private) {
		t.Errorf("round trip changed the key: %+v", got)
	}
	// The thumbprint matches jwx's RFC 7638 implementation.
	jk, err := jwk.Import(&k.Private.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	tp, err := jk.Thumbprint(cryptoSHA256)
	if err != nil {
		t.Fatal(err)
	}
	if want := b64(tp); want != k.ID {
		t.Errorf("thumbprint %s, jwx says %s", k.ID, want)
	}
}

func TestRevoke(t *testing.T) {
	iss, src, c := newTestIssuer(t)
	ctx := context.Background()
	var events []RevocationEvent
	cancel := iss.Subscribe(func(ev RevocationEvent) { events = append(events, ev) })
	defer cancel()

	t1, _ := iss.Issue(ctx, src, "dev-1", testNonce, "rp")
	t2, _ := iss.Issue(ctx, src, "dev-1", testNonce, "rp2")
	src.set(goodAppraisal("dev-2", c.now()))
	other, _ := iss.Issue(ctx, src, "dev-2", testNonce, "rp")

	if st, ok := iss.Status(t1.ID); !ok || st.Status != TokenActive {
		t.Fatalf("before revocation: %+v %v", st, ok)
	}
	if err := iss.RevokeWithReason("dev-1", "turned UNTRUSTED"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{t1.ID, t2.ID} {
		if st, _ := iss.Status(id); st.Status != TokenRevoked {
			t.Errorf("token %s: %s after revocation", id, st.Status)
		}
	}
	if st, _ := iss.Status(other.ID); st.Status != TokenActive {
		t.Errorf("other device's token %s", st.Status)
	}
	if len(events) != 1 || events[0].DeviceID != "dev-1" || len(events[0].TokenIDs) != 2 || events[0].Reason != "turned UNTRUSTED" {
		t.Fatalf("events %+v", events)
	}
	// The appraisal still says TRUSTED, but a revoked device gets no affirming token.
	t3, err := iss.Issue(ctx, src, "dev-1", testNonce, "rp")
	if err != nil {
		t.Fatal(err)
	}
	if t3.Status == "affirming" {
		t.Fatal("affirming token for a revoked device")
	}
	if st, _ := iss.Status(t3.ID); st.Status != TokenRevoked {
		t.Errorf("token issued while revoked has status %s", st.Status)
	}
	if err := iss.Reinstate("dev-1"); err != nil {
		t.Fatal(err)
	}
	t4, _ := iss.Issue(ctx, src, "dev-1", testNonce, "rp")
	if t4.Status != "affirming" {
		t.Errorf("after reinstate: %s %q", t4.Status, t4.Reasons)
	}
	if st, _ := iss.Status(t1.ID); st.Status != TokenRevoked {
		t.Error("reinstate un-revoked an old token")
	}
	// Expiry shows in the status, then the record is forgotten.
	c.add(DefaultLifetime + time.Second)
	if st, _ := iss.Status(t4.ID); st.Status != TokenExpired {
		t.Errorf("expired token status %s", st.Status)
	}
	c.add(DefaultLifetime + time.Second)
	iss.Issue(ctx, src, "dev-2", testNonce, "rp") // prunes
	if _, ok := iss.Status(t4.ID); ok {
		t.Error("long-expired token still remembered")
	}
}

func TestUntrustedDeviceGetsNoAffirmingToken(t *testing.T) {
	iss, src, c := newTestIssuer(t)
	a := goodAppraisal("dev-1", c.now())
	a.Trusted, a.State, a.IMAVerdict = false, "UNTRUSTED", IMAContraindicated
	a.Failures = []string{failure.IMAInvalidHash}
	src.set(a)
	tok, err := iss.Issue(context.Background(), src, "dev-1", testNonce, "rp")
	if err != nil {
		t.Fatal(err)
	}
	if tok.Status != "contraindicated" {
		t.Fatalf("status %s", tok.Status)
	}
}

func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	ks := FileKeyStore{Dir: filepath.Join(dir, "keys")}
	p, err := OpenBoltPersister(filepath.Join(dir, "ear.db"))
	if err != nil {
		t.Fatal(err)
	}
	iss, err := NewIssuer(ks, WithPersister(p))
	if err != nil {
		t.Fatal(err)
	}
	src := &tableSource{m: map[string]Appraisal{}}
	src.set(goodAppraisal("dev-1", time.Now()))
	src.set(goodAppraisal("dev-2", time.Now()))
	ctx := context.Background()
	t1, _ := iss.Issue(ctx, src, "dev-1", testNonce, "rp")
	t2, _ := iss.Issue(ctx, src, "dev-2", testNonce, "rp")
	if err := iss.Revoke("dev-1"); err != nil {
		t.Fatal(err)
	}
	p.Close()

	// After a restart the revocation and both token records are still known.
	p, err = OpenBoltPersister(filepath.Join(dir, "ear.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	iss, err = NewIssuer(ks, WithPersister(p))
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := iss.Status(t1.ID); st.Status != TokenRevoked {
		t.Errorf("revoked token after restart: %q", st.Status)
	}
	if st, _ := iss.Status(t2.ID); st.Status != TokenActive {
		t.Errorf("active token after restart: %q", st.Status)
	}
	if !iss.Revoked("dev-1") {
		t.Error("device revocation lost on restart")
	}
	if tok, _ := iss.Issue(ctx, src, "dev-1", testNonce, "rp"); tok.Status == "affirming" {
		t.Error("affirming token after restart for a revoked device")
	}
}

// failingPersister refuses every write: nothing must be issued.
type failingPersister struct{ nopPersister }

func (failingPersister) PutToken(TokenRecord) error { return fmt.Errorf("disk full") }

func TestIssueFailsClosedWhenNotRecorded(t *testing.T) {
	iss, src, _ := newTestIssuer(t, WithPersister(failingPersister{}))
	if _, err := iss.Issue(context.Background(), src, "dev-1", testNonce, "rp"); err == nil {
		t.Fatal("issued a token the hub could not record")
	}
}

func TestWebhookPush(t *testing.T) {
	got := make(chan string, 1)
	rp := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get("Content-Type") != "application/secevent+jwt" {
			http.Error(w, "content type", 400)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		got <- string(b)
	}))
	defer rp.Close()
	iss, src, _ := newTestIssuer(t, WithWebhook(rp.URL+"/revocations"), WithHTTPClient(rp.Client()))
	hub := httptest.NewServer(NewHandler(iss, src, nil))
	defer hub.Close()
	tok, _ := iss.Issue(context.Background(), src, "dev-1", testNonce, "rp")
	if err := iss.Revoke("dev-1"); err != nil {
		t.Fatal(err)
	}
	iss.Close()
	set := <-got
	parsed, err := jxt.Parse([]byte(set), jxt.WithKeySet(fetchJWKS(t, hub.URL)), jxt.WithIssuer(DefaultIssuer))
	if err != nil {
		t.Fatalf("SET does not verify: %v", err)
	}
	var events map[string]RevocationEvent
	if err := parsed.Get("events", &events); err != nil {
		// jwx decodes unknown claims generically; re-marshal.
		var raw any
		if err := parsed.Get("events", &raw); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(raw)
		if err := json.Unmarshal(b, &events); err != nil {
			t.Fatal(err)
		}
	}
	ev := events[EventRevoked]
	if ev.DeviceID != "dev-1" || len(ev.TokenIDs) != 1 || ev.TokenIDs[0] != tok.ID {
		t.Errorf("event %+v", ev)
	}
	if err := iss.AddWebhook("http://plain.example/hook"); err == nil {
		t.Error("accepted a plain-http webhook")
	}
}

func TestHandler(t *testing.T) {
	iss, src, _ := newTestIssuer(t)
	auth := func(r *http.Request) bool { return r.Header.Get("Authorization") == "Bearer op" }
	srv := httptest.NewServer(NewHandler(iss, src, auth))
	defer srv.Close()
	post := func(authz, body string) (int, TokenResponse) {
		req, _ := http.NewRequest("POST", srv.URL+"/v1/tokens", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var tr TokenResponse
		json.NewDecoder(resp.Body).Decode(&tr)
		return resp.StatusCode, tr
	}
	good := `{"device_id":"dev-1","nonce":"` + testNonce + `","audience":"rp"}`
	cases := []struct {
		name, authz, body string
		code              int
	}{
		{"ok", "Bearer op", good, 200},
		{"no auth", "", good, 401},
		{"wrong auth", "Bearer nope", good, 401},
		{"unknown field", "Bearer op", `{"device_id":"dev-1","nonce":"` + testNonce + `","audience":"rp","ttl":99}`, 400},
		{"short nonce", "Bearer op", `{"device_id":"dev-1","nonce":"x","audience":"rp"}`, 400},
		{"trailing", "Bearer op", good + `{}`, 400},
		{"not json", "Bearer op", `device_id=dev-1`, 400},
		{"unknown device", "Bearer op", `{"device_id":"dev-9","nonce":"` + testNonce + `","audience":"rp"}`, 404},
	}
	var issued TokenResponse
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, tr := post(tc.authz, tc.body)
			if code != tc.code {
				t.Fatalf("code %d, want %d", code, tc.code)
			}
			if code == 200 {
				if tr.Token == "" || tr.Status != "affirming" {
					t.Fatalf("response %+v", tr)
				}
				issued = tr
			}
		})
	}
	status := func(id string) (int, TokenStatus) {
		resp, err := http.Get(srv.URL + "/v1/tokens/" + id + "/status")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st TokenStatus
		json.NewDecoder(resp.Body).Decode(&st)
		return resp.StatusCode, st
	}
	if code, st := status(issued.ID); code != 200 || st.Status != TokenActive {
		t.Errorf("status %d %+v", code, st)
	}
	iss.Revoke("dev-1")
	if code, st := status(issued.ID); code != 200 || st.Status != TokenRevoked {
		t.Errorf("status after revoke %d %+v", code, st)
	}
	if code, _ := status("no-such-token"); code != 404 {
		t.Errorf("unknown token: %d", code)
	}
	// A nil auth func refuses everything.
	closed := httptest.NewServer(NewHandler(iss, src, nil))
	defer closed.Close()
	resp, err := http.Post(closed.URL+"/v1/tokens", "application/json", strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("nil auth: %d", resp.StatusCode)
	}
}
