package release_test

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/lestrrat-go/jwx/v3/jwk"
	jxt "github.com/lestrrat-go/jwx/v3/jwt"
	"github.com/ratatouille/rat/examples/secret-release/demo"
	"github.com/ratatouille/rat/examples/secret-release/release"
	"github.com/ratatouille/rat/hub/ear"
)

// skew is the service's clock offset, moved by the "expired" case.
type skew struct {
	mu sync.Mutex
	d  time.Duration
}

func (s *skew) now() time.Time { s.mu.Lock(); defer s.mu.Unlock(); return time.Now().Add(s.d) }
func (s *skew) set(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d = d
}

func start(t *testing.T) (*demo.Env, *skew) {
	t.Helper()
	sk := &skew{}
	env, err := demo.Start(demo.Config{KeyDir: t.TempDir(), VerifierNow: sk.now, Secret: "the-secret"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	env.Source.Set(demo.Trusted("dev-1"))
	env.Source.Set(demo.Trusted("dev-2"))
	return env, sk
}

func device(t *testing.T, env *demo.Env, id string) *demo.Device {
	t.Helper()
	d, err := env.Device(id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func nonce(t *testing.T, d *demo.Device) string {
	t.Helper()
	n, err := d.Nonce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func token(t *testing.T, d *demo.Device, n, aud string) ear.Token {
	t.Helper()
	tok, err := d.Token(context.Background(), n, aud)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// forge re-signs the token's claims (optionally changed) with another method and key.
func forge(t *testing.T, tok string, mutate func(jwt.MapClaims), m jwt.SigningMethod, key any) string {
	t.Helper()
	var claims jwt.MapClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &claims); err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(claims)
	}
	nt := jwt.NewWithClaims(m, claims)
	s, err := nt.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSecretRelease(t *testing.T) {
	env, sk := start(t)
	dev1, dev2 := device(t, env, "dev-1"), device(t, env, "dev-2")
	other, err := ear.NewIssuer(ear.FileKeyStore{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		caller  *demo.Device
		present func(t *testing.T) string // returns the token to present
		after   func()                    // undo
		refuse  error                     // nil: secret released
	}{
		{"affirming token for own device", dev1, func(t *testing.T) string {
			return token(t, dev1, nonce(t, dev1), demo.Audience).JWT
		}, nil, nil},
		{"expired", dev1, func(t *testing.T) string {
			tok := token(t, dev1, nonce(t, dev1), demo.Audience).JWT
			sk.set(ear.DefaultLifetime + time.Minute)
			return tok
		}, func() { sk.set(0) }, release.ErrToken},
		{"wrong audience", dev1, func(t *testing.T) string {
			return token(t, dev1, nonce(t, dev1), "another-service").JWT
		}, nil, release.ErrToken},
		{"nonce never issued", dev1, func(t *testing.T) string {
			return token(t, dev1, "made-up-nonce-0000000000", demo.Audience).JWT
		}, nil, release.ErrNonce},
		{"nonce issued to another device", dev1, func(t *testing.T) string {
			return token(t, dev1, nonce(t, dev2), demo.Audience).JWT
		}, nil, release.ErrNonce},
		{"token of another device", dev2, func(t *testing.T) string {
			return token(t, dev1, nonce(t, dev2), demo.Audience).JWT
		}, nil, release.ErrWrongDevice},
		{"replayed token", dev1, func(t *testing.T) string {
			tok := token(t, dev1, nonce(t, dev1), demo.Audience).JWT
			if s, refused, _ := dev1.Secret(context.Background(), tok); s == "" {
				t.Fatalf("first use refused: %s", refused)
			}
			return tok
		}, nil, release.ErrNonce},
		{"revoked", dev1, func(t *testing.T) string {
			tok := token(t, dev1, nonce(t, dev1), demo.Audience).JWT
			if err := env.Issuer.Revoke("dev-1"); err != nil {
				t.Fatal(err)
			}
			return tok
		}, func() { env.Issuer.Reinstate("dev-1") }, release.ErrRevoked},
		{"tofu device is not affirming", dev1, func(t *testing.T) string {
			a := demo.Trusted("dev-1")
			a.EKCertVerified, a.TOFU = false, true
			env.Source.Set(a)
			return token(t, dev1, nonce(t, dev1), demo.Audience).JWT
		}, func() { env.Source.Set(demo.Trusted("dev-1")) }, release.ErrNotAffirm},
		{"signed by another hub", dev1, func(t *testing.T) string {
			tok, err := other.IssueForDevice(context.Background(), env.Source, "dev-1", nonce(t, dev1), demo.Audience)
			if err != nil {
				t.Fatal(err)
			}
			return tok.JWT
		}, nil, release.ErrToken},
		{"HS256 keyed with the public JWKS", dev1, func(t *testing.T) string {
			tok := token(t, dev1, nonce(t, dev1), demo.Audience).JWT
			jwks, _ := http.Get(env.HubURL + "/.well-known/jwks.json")
			b, _ := io.ReadAll(jwks.Body)
			jwks.Body.Close()
			return forge(t, tok, nil, jwt.SigningMethodHS256, b)
		}, nil, release.ErrToken},
		{"alg none", dev1, func(t *testing.T) string {
			tok := token(t, dev1, nonce(t, dev1), demo.Audience).JWT
			return forge(t, tok, nil, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType)
		}, nil, release.ErrToken},
		{"payload edited", dev1, func(t *testing.T) string {
			a := demo.Trusted("dev-1")
			a.Trusted, a.State = false, "UNTRUSTED"
			env.Source.Set(a)
			tok := token(t, dev1, nonce(t, dev1), demo.Audience).JWT
			parts := strings.Split(tok, ".")
			p, _ := base64.RawURLEncoding.DecodeString(parts[1])
			p = []byte(strings.Replace(string(p), `"contraindicated"`, `"affirming"`, 1))
			parts[1] = base64.RawURLEncoding.EncodeToString(p)
			return strings.Join(parts, ".")
		}, func() { env.Source.Set(demo.Trusted("dev-1")) }, release.ErrToken},
		{"garbage", dev1, func(*testing.T) string { return "not.a.jwt" }, nil, release.ErrToken},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok := tc.present(t)
			if tc.after != nil {
				defer tc.after()
			}
			secret, refused, err := tc.caller.Secret(context.Background(), tok)
			if err != nil {
				t.Fatal(err)
			}
			if tc.refuse == nil {
				if secret != "the-secret" {
					t.Fatalf("refused: %s", refused)
				}
				return
			}
			if secret != "" {
				t.Fatal("secret released")
			}
			if !strings.HasPrefix(refused, tc.refuse.Error()) {
				t.Errorf("refused with %q, want %q", refused, tc.refuse)
			}
		})
	}
}

// The device turns UNTRUSTED: with the appraisal change alone no new token
// is affirming, and with Revoke its live tokens stop working on the very
// next request (no cache stands between the service and the hub).
func TestUntrustedDeviceStopsGettingSecrets(t *testing.T) {
	env, _ := start(t)
	dev := device(t, env, "dev-1")
	ctx := context.Background()
	if _, s, refused, err := dev.Attempt(ctx); err != nil || s == "" {
		t.Fatalf("trusted device refused: %s %v", refused, err)
	}
	live := token(t, dev, nonce(t, dev), demo.Audience)

	a := demo.Trusted("dev-1")
	a.Trusted, a.State, a.IMAVerdict = false, "UNTRUSTED", ear.IMAUnrecognized
	env.Source.Set(a)
	tok, s, refused, err := dev.Attempt(ctx)
	if err != nil || s != "" {
		t.Fatalf("untrusted device got the secret (%v)", err)
	}
	if tok.Status == "affirming" || !strings.HasPrefix(refused, release.ErrNotAffirm.Error()) {
		t.Errorf("new token %s refused with %q", tok.Status, refused)
	}
	if err := env.Issuer.Revoke("dev-1"); err != nil {
		t.Fatal(err)
	}
	if s, refused, _ := dev.Secret(ctx, live.JWT); s != "" || !strings.HasPrefix(refused, release.ErrRevoked.Error()) {
		t.Errorf("token issued before revocation: secret %q, refused %q", s, refused)
	}
	// Even when the appraisal recovers, a revoked device stays refused
	// until the hub reinstates it.
	env.Source.Set(demo.Trusted("dev-1"))
	if _, s, _, _ := dev.Attempt(ctx); s != "" {
		t.Error("revoked device got the secret before reinstatement")
	}
	env.Issuer.Reinstate("dev-1")
	if _, s, refused, _ := dev.Attempt(ctx); s == "" {
		t.Errorf("reinstated device refused: %s", refused)
	}
}

func TestHubUnreachableFailsClosed(t *testing.T) {
	env, _ := start(t)
	dev := device(t, env, "dev-1")
	// Warm the JWKS cache so only the status check needs the hub.
	if _, s, refused, _ := dev.Attempt(context.Background()); s == "" {
		t.Fatalf("refused: %s", refused)
	}
	tok := token(t, dev, nonce(t, dev), demo.Audience)
	env.StopHub()
	s, refused, err := dev.Secret(context.Background(), tok.JWT)
	if err != nil {
		t.Fatal(err)
	}
	if s != "" || !strings.HasPrefix(refused, release.ErrHub.Error()) {
		t.Errorf("hub down: secret %q, refused %q", s, refused)
	}
}

func TestKeyRotation(t *testing.T) {
	env, _ := start(t)
	env.Verifier.JWKSRefresh = time.Nanosecond
	dev := device(t, env, "dev-1")
	ctx := context.Background()
	old := token(t, dev, nonce(t, dev), demo.Audience)
	if _, s, refused, _ := dev.Attempt(ctx); s == "" {
		t.Fatalf("refused: %s", refused) // JWKS now cached with the first key only
	}
	if err := env.Issuer.Rotate(); err != nil {
		t.Fatal(err)
	}
	// A token of the new key: the service refetches the JWKS for its kid.
	if _, s, refused, _ := dev.Attempt(ctx); s == "" {
		t.Errorf("token of the rotated key refused: %s", refused)
	}
	// A live token of the old key still works.
	if s, refused, _ := dev.Secret(ctx, old.JWT); s == "" {
		t.Errorf("token of the retired key refused: %s", refused)
	}
}

// Any JOSE library verifies the hub's tokens from the published JWKS alone.
func TestTokenVerifiesWithJWX(t *testing.T) {
	env, _ := start(t)
	dev := device(t, env, "dev-1")
	tok := token(t, dev, nonce(t, dev), demo.Audience)
	resp, err := http.Get(env.HubURL + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	set, err := jwk.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := jxt.Parse([]byte(tok.JWT), jxt.WithKeySet(set), jxt.WithAudience(demo.Audience), jxt.WithSubject("dev-1"))
	if err != nil {
		t.Fatalf("jwx: %v", err)
	}
	var nonceClaim string
	if err := parsed.Get("eat_nonce", &nonceClaim); err != nil || nonceClaim == "" {
		t.Errorf("eat_nonce: %q %v", nonceClaim, err)
	}
	keys, err := release.ParseJWKS(b)
	if err != nil || len(keys) != 1 {
		t.Errorf("ParseJWKS: %d keys, %v", len(keys), err)
	}
}

func TestNoClientCertificateNoNonce(t *testing.T) {
	env, _ := start(t)
	// A TLS client trusting the server but presenting no certificate does
	// not even complete the handshake (RequireAndVerifyClientCert).
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfigWithoutCert(env)}}
	resp, err := c.Post(env.ServiceURL+"/v1/nonce", "", nil)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("nonce without client certificate: %s", resp.Status)
	}
}

func tlsConfigWithoutCert(env *demo.Env) *tls.Config {
	return &tls.Config{RootCAs: env.CA.Pool, MinVersion: tls.VersionTLS13}
}

func TestClientCertIdentity(t *testing.T) {
	r, _ := http.NewRequest("GET", "/", nil)
	if _, err := release.ClientCertIdentity(r); err == nil {
		t.Error("identity without TLS")
	}
}

func TestNonces(t *testing.T) {
	now := time.Now()
	n := &release.Nonces{TTL: time.Minute, Now: func() time.Time { return now }}
	a, _ := n.New("dev-1")
	b, _ := n.New("dev-1")
	c, _ := n.New("dev-2")
	if a == b || len(a) < ear.MinNonceLen || len(a) > ear.MaxNonceLen {
		t.Fatalf("nonces %q %q", a, b)
	}
	if !n.Consume(a, "dev-1") || n.Consume(a, "dev-1") {
		t.Error("nonce not single-use")
	}
	if n.Consume(c, "dev-1") {
		t.Error("nonce of dev-2 accepted for dev-1")
	}
	now = now.Add(2 * time.Minute)
	if n.Consume(b, "dev-1") {
		t.Error("expired nonce accepted")
	}
	if errors.Is(release.ErrNonce, release.ErrToken) {
		t.Error("sentinels alias")
	}
}
