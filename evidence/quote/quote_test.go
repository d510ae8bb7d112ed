package quote

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"math/big"
	"os"
	"testing"

	"github.com/ratatouille/rat/evidence/failure"
)

// Fixtures are real quotes from the TPM simulator, written by
// test/tpmsim TestWriteFixtures (root module).
type fixture struct {
	ak          crypto.PublicKey
	attest, sig []byte
	pcrs        PCRValues
}

var fixtureNonce = []byte("fixture nonce")

func loadFixture(t testing.TB, name string) fixture {
	t.Helper()
	read := func(ext string) []byte {
		b, err := os.ReadFile("testdata/" + name + "." + ext)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ak, err := x509.ParsePKIXPublicKey(read("ak.der"))
	if err != nil {
		t.Fatal(err)
	}
	raw := read("pcrs")
	vals := map[int][]byte{}
	for i := 0; i <= 10; i++ {
		vals[i] = raw[i*32 : (i+1)*32]
	}
	return fixture{ak: ak, attest: read("attest"), sig: read("sig"), pcrs: PCRValues{AlgSHA256: vals}}
}

func idOf(err error) string {
	var fe *failure.Error
	if errors.As(err, &fe) {
		return fe.Event.ID
	}
	return ""
}

func TestVerifyFixtures(t *testing.T) {
	for _, name := range []string{"ecc", "rsa"} {
		t.Run(name, func(t *testing.T) {
			f := loadFixture(t, name)
			res, err := Verify(f.ak, f.attest, f.sig, f.pcrs, WithNonce(fixtureNonce), WithRequiredPCRs(AlgSHA256, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10))
			if err != nil {
				t.Fatalf("real quote rejected: %v", err)
			}
			if got := res.Attest.PCRSelections; len(got) != 1 || got[0].Hash != AlgSHA256 || len(got[0].PCRs) != 11 {
				t.Fatalf("selection = %+v", got)
			}
			short := f.sig[:len(f.sig)-1]
			if id := idOf(mustErr(Verify(f.ak, f.attest, short, f.pcrs, WithNonce(fixtureNonce)))); id != failure.QuoteMalformed {
				t.Fatalf("truncated signature: id %q, want %q", id, failure.QuoteMalformed)
			}
		})
	}
}

func mustErr(_ *Result, err error) error { return err }

// Checks after the signature: a self-signed TPMS_ATTEST (as a caller of
// TPM2_Sign with a non-restricted key could make) must fail on magic/type
// even though its signature verifies.
func TestVerifyOrderAfterSignature(t *testing.T) {
	f := loadFixture(t, "ecc")
	key, err := ecdsa.GenerateKey(f.ak.(*ecdsa.PublicKey).Curve, randReader{})
	if err != nil {
		t.Fatal(err)
	}
	sign := func(attest []byte) []byte {
		d := sha256.Sum256(attest)
		r, s, err := ecdsa.Sign(randReader{}, key, d[:])
		if err != nil {
			t.Fatal(err)
		}
		out := []byte{0x00, 0x18, 0x00, 0x0b}
		for _, v := range []*big.Int{r, s} {
			b := v.FillBytes(make([]byte, 32))
			out = append(out, 0, 32)
			out = append(out, b...)
		}
		return out
	}
	badMagic := append([]byte(nil), f.attest...)
	badMagic[0] = 0
	badType := append([]byte(nil), f.attest...)
	badType[5] = 0x17
	for _, tc := range []struct {
		name   string
		attest []byte
		want   string
	}{
		{"genuine bytes, our key", f.attest, ""},
		{"magic", badMagic, failure.QuoteNotGenerated},
		{"type", badType, failure.QuoteWrongType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(&key.PublicKey, tc.attest, sign(tc.attest), f.pcrs, WithNonce(fixtureNonce))
			if got := idOf(err); got != tc.want {
				t.Fatalf("id = %q (%v), want %q", got, err, tc.want)
			}
		})
	}
	// The RSA AK cannot check an ECDSA signature.
	r := loadFixture(t, "rsa")
	if id := idOf(mustErr(Verify(r.ak, f.attest, f.sig, f.pcrs, WithNonce(fixtureNonce)))); id != failure.QuoteInvalidScheme {
		t.Fatalf("scheme mismatch: id %q", id)
	}
}

func TestDecodeErrors(t *testing.T) {
	f := loadFixture(t, "ecc")
	for _, cut := range []int{0, 5, 20, len(f.attest) - 1} {
		if _, err := DecodeAttest(f.attest[:cut]); err == nil {
			t.Errorf("DecodeAttest(attest[:%d]) accepted", cut)
		}
	}
	if _, err := DecodeAttest(append(append([]byte(nil), f.attest...), 0)); err == nil {
		t.Error("trailing byte accepted")
	}
	if _, err := DecodeSignature([]byte{0x00, 0x99, 0x00, 0x0b}); err == nil {
		t.Error("unknown signature algorithm accepted")
	}
}

func TestAttestMarshal(t *testing.T) {
	for _, name := range []string{"ecc", "rsa"} {
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile("testdata/" + name + ".attest")
			if err != nil {
				t.Fatal(err)
			}
			a, err := DecodeAttest(b)
			if err != nil {
				t.Fatal(err)
			}
			if got := a.Marshal(); !bytes.Equal(got, b) {
				t.Fatalf("Marshal = %x\nwant      %x", got, b)
			}
			// A changed field shows in the encoding (Marshal is not a
			// copy of the input).
			a.ClockInfo.Clock++
			if bytes.Equal(a.Marshal(), b) {
				t.Fatal("Marshal ignores the clock")
			}
		})
	}
}
