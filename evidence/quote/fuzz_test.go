package quote

import (
	"bytes"
	"os"
	"testing"
)

func FuzzDecodeAttest(f *testing.F) {
	for _, n := range []string{"ecc", "rsa"} {
		if b, err := os.ReadFile("testdata/" + n + ".attest"); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := DecodeAttest(b)
		if err != nil || a.Type != TagAttestQuote {
			return
		}
		// Marshal gives back every quote attest a TPM can make: all but a
		// safe byte other than 0 or 1 (at offset 4+2+2+len(qualifiedSigner)+2+len(extraData)+16).
		safeAt := 4 + 2 + 2 + len(a.QualifiedSigner) + 2 + len(a.ExtraData) + 16
		if b[safeAt] > 1 {
			return
		}
		if got := a.Marshal(); !bytes.Equal(got, b) {
			t.Fatalf("Marshal(DecodeAttest(b)) = %x, want %x", got, b)
		}
	})
}

func FuzzDecodeSignature(f *testing.F) {
	for _, n := range []string{"ecc", "rsa"} {
		if b, err := os.ReadFile("testdata/" + n + ".sig"); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = DecodeSignature(b) })
}

// FuzzVerify feeds arbitrary attest/signature bytes to Verify with a real
// AK: it must never panic and never accept.
func FuzzVerify(f *testing.F) {
	fx := loadFixture(f, "ecc")
	f.Add(fx.attest, fx.sig)
	f.Fuzz(func(t *testing.T, attest, sig []byte) {
		if string(attest) == string(fx.attest) && string(sig) == string(fx.sig) {
			return
		}
		if _, err := Verify(fx.ak, attest, sig, fx.pcrs, WithNonce(fixtureNonce)); err == nil {
			t.Fatal("Verify accepted fuzzed bytes")
		}
	})
}
