package ima

import (
	"bytes"
	"os"
	"testing"
)

func FuzzParseASCII(f *testing.F) {
	f.Add([]byte("10 " + "0000000000000000000000000000000000000000" + " ima-ng sha256:00 /x\n"))
	for _, n := range []string{"keylime-tests-mixed-ima-ng-ima-buf.ascii"} {
		if b, err := os.ReadFile(testdata + n); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		es, err := ParseASCII(bytes.NewReader(in))
		if err != nil {
			return
		}
		// What parsed must survive the binary form unchanged.
		back, err := ParseBinary(bytes.NewReader(MarshalBinary(es)))
		if err != nil {
			t.Fatalf("binary form of parsed entries does not parse: %v", err)
		}
		if len(back) != len(es) {
			t.Fatalf("round trip: %d entries, want %d", len(back), len(es))
		}
	})
}

func FuzzParseBinary(f *testing.F) {
	if b, err := os.ReadFile(testdata + "keylime-tests-mixed-ima-ng-ima-buf.ascii"); err == nil {
		if es, err := ParseASCII(bytes.NewReader(b)); err == nil {
			f.Add(MarshalBinary(es))
			f.Add(MarshalBinary(es[:1]))
		}
	}
	f.Add([]byte{10, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		_, _ = ParseBinary(bytes.NewReader(in))
	})
}
