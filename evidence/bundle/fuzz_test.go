package bundle

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
)

// FuzzDecode: the decoder never panics, never accepts trailing data, and
// whatever it accepts re-encodes to exactly the input (one bundle, one
// encoding).
func FuzzDecode(f *testing.F) {
	fx := newFixture(f, true, 4)
	f.Add(fx.encoded)
	f.Add(newFixture(f, false, 1).encoded)
	f.Add(fx.encoded[:fx.endStart])
	f.Add([]byte{0xa0})
	f.Add([]byte{0x82, 0x61, 0x61, 0x41, 0x00})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	f.Fuzz(func(t *testing.T, in []byte) {
		d, items, err := decodeAll(in)
		if err != nil {
			return
		}
		var buf bytes.Buffer
		enc, err := NewEncoder(&buf, d.Header())
		if err != nil {
			t.Fatalf("accepted header does not re-encode: %v", err)
		}
		for _, it := range items {
			switch v := it.(type) {
			case *Policy:
				err = enc.WritePolicy(v)
			case *Verdict:
				err = enc.WriteVerdict(v)
			default:
				_ = v
			}
			if err != nil {
				t.Fatalf("accepted item does not re-encode: %v", err)
			}
		}
		_ = VerifyEnd(d.End(), &key.PublicKey)
		_, _ = VerifyBinding(d.Header().Binding, &key.PublicKey)
	})
}
