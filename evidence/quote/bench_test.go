package quote

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"math/big"
	"testing"
)

// Quote verification against the bare signature check it is built on,
// side by side: the target is within 1.3x.
func BenchmarkVerify(b *testing.B) {
	for _, name := range []string{"ecc", "rsa"} {
		f := loadFixture(b, name)
		b.Run(name+"/quote", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := Verify(f.ak, f.attest, f.sig, f.pcrs, WithNonce(fixtureNonce)); err != nil {
					b.Fatal(err)
				}
			}
		})
		sig, _ := DecodeSignature(f.sig)
		b.Run(name+"/bare-signature", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				d := sha256.Sum256(f.attest)
				switch k := f.ak.(type) {
				case *ecdsa.PublicKey:
					if !ecdsa.Verify(k, d[:], new(big.Int).SetBytes(sig.R), new(big.Int).SetBytes(sig.S)) {
						b.Fatal("bad")
					}
				case *rsa.PublicKey:
					if err := rsa.VerifyPKCS1v15(k, crypto.SHA256, d[:], sig.RSA); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
