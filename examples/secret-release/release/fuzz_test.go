package release_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"testing"

	"github.com/ratatouille/rat/examples/secret-release/demo"
	"github.com/ratatouille/rat/examples/secret-release/release"
)

func FuzzParseJWKS(f *testing.F) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	pb, _ := priv.PublicKey.Bytes()
	x, y := base64.RawURLEncoding.EncodeToString(pb[1:33]), base64.RawURLEncoding.EncodeToString(pb[33:])
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","kid":"k","alg":"ES256","use":"sig","x":"` + x + `","y":"` + y + `"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":"` + x + `","y":"` + y + `"},{"kty":"EC","crv":"P-256","kid":"k","x":"` + x + `","y":"` + y + `"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":"AAAA","y":"AAAA"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","kid":"k","d":"x"}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := release.ParseJWKS(b)
		if err != nil {
			return
		}
		if len(keys) == 0 {
			t.Fatal("no keys without error")
		}
		for kid, k := range keys {
			if kid == "" || k == nil {
				t.Fatalf("bad key %q", kid)
			}
			b, err := k.Bytes()
			if err != nil {
				t.Fatalf("key %q: %v", kid, err)
			}
			if _, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), b); err != nil {
				t.Fatalf("key %q not on P-256: %v", kid, err)
			}
		}
	})
}

// FuzzVerify: nothing but a hub-signed token is ever accepted.
func FuzzVerify(f *testing.F) {
	env, err := demo.Start(demo.Config{KeyDir: f.TempDir()})
	if err != nil {
		f.Fatal(err)
	}
	defer env.Close()
	env.Source.Set(demo.Trusted("dev-1"))
	n, _ := env.Verifier.Nonces.New("dev-1")
	tok, err := env.Issuer.IssueForDevice(context.Background(), env.Source, "dev-1", n, "another-audience")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok.JWT)
	f.Add(tok.JWT + "x")
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJkZXYtMSJ9.")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, s string) {
		if _, err := env.Verifier.Verify(context.Background(), s, "dev-1"); err == nil {
			t.Fatalf("accepted %q", s)
		}
	})
}
