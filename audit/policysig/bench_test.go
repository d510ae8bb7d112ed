package policysig_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"

	"github.com/ratatouille/rat/audit/policysig"
	"github.com/ratatouille/rat/audit/policysig/policysigtest"
)

// BenchmarkVerify: the cost of one policy check on the hub, keyless (chain,
// SET, inclusion proof, TSA, identity) and key-only.
func BenchmarkVerify(b *testing.B) {
	vs, err := policysigtest.New()
	if err != nil {
		b.Fatal(err)
	}
	keyless, err := vs.SignBundle(alice, issuer, policyJSON, policysigtest.Parts{})
	if err != nil {
		b.Fatal(err)
	}
	vKeyless, err := policysig.New(vs.TrustedMaterial(), policysig.WithIdentity(policysig.Identity{Issuer: issuer, SAN: alice}))
	if err != nil {
		b.Fatal(err)
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keyed, err := policysig.SignWithKey(context.Background(), policyJSON, k)
	if err != nil {
		b.Fatal(err)
	}
	vKey, err := policysig.New(nil, policysig.WithPublicKey(k.Public()), policysig.WithoutTlogUnsafe())
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		v      *policysig.Verifier
		bundle []byte
	}{{"keyless", vKeyless, keyless}, {"key", vKey, keyed}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := c.v.Verify(policyJSON, c.bundle); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
