package tpm

import (
	"bytes"
	"testing"
)

// FuzzParsePublic feeds parsePublic arbitrary TPMT_PUBLIC bytes (what a
// TPM, or something posing as one on the device's TPM device node, returns
// from CreatePrimary and ReadPublic): it must refuse or decode without
// panicking, never read past the input, and a decoded area's key material
// must be bytes of the input.
func FuzzParsePublic(f *testing.F) {
	for _, seed := range [][]byte{ekTemplate(), akTemplate(), akRSATemplate(), nil, {0x00, 0x23}, {0x00, 0x01, 0x00, 0x0b, 0, 0, 0, 0, 0xff, 0xff}} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parsePublic(b)
		if err != nil {
			if p != nil {
				t.Fatalf("error %v with a result", err)
			}
			return
		}
		for _, part := range [][]byte{p.rsaModulus, p.eccX, p.eccY} {
			if len(part) > 0 && !bytes.Contains(b, part) {
				t.Fatalf("decoded key material %x is not from the input", part)
			}
		}
		if p.typ != algRSA && p.typ != algECC {
			t.Fatalf("decoded a TPMT_PUBLIC of type 0x%04x", p.typ)
		}
	})
}
