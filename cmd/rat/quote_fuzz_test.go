package main

import (
	"os"
	"testing"
)

// FuzzParsePCRsFile: the three PCR file forms of rat quote verify --pcrs
// never panic, and whatever parses has values of its bank's size only.
func FuzzParsePCRsFile(f *testing.F) {
	if b, err := os.ReadFile(quoteFixtures + "ecc.pcrs"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"sha256": {"0": "` + "00000000000000000000000000000000000000000000000000000000000000ff" + `"}, "secure_boot": {}}`))
	ser := make([]byte, 4+16*8+4+532)
	ser[0], ser[4], ser[6], ser[7] = 1, 0x0b, 3, 1 // one selection: sha256 PCR 0
	ser[136], ser[140], ser[144] = 1, 1, 32        // one TPML_DIGEST, one digest of 32 bytes
	f.Add(ser)
	f.Fuzz(func(t *testing.T, in []byte) {
		v, err := parsePCRsFile(in, 0x000b, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
		if err != nil {
			return
		}
		for bank, pcrs := range v {
			for p, d := range pcrs {
				if p < 0 || p > 23 || len(d) != bankSizes[bank] {
					t.Fatalf("bank 0x%04x PCR %d: %d bytes", bank, p, len(d))
				}
			}
		}
	})
}

func FuzzParsePCRList(f *testing.F) {
	for _, s := range []string{"0-10", "sha256:0,1,2", "sha1:16", "none", "3-1", "0-23"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		bank := uint16(0x000b)
		pcrs, err := parsePCRList(s, &bank)
		if err != nil {
			return
		}
		for _, p := range pcrs {
			if p < 0 || p > 23 {
				t.Fatalf("PCR %d from %q", p, s)
			}
		}
	})
}
