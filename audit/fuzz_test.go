package audit_test

import (
	"bytes"
	"testing"

	"github.com/ratatouille/rat/audit"
)

// FuzzVerify: the auditor never panics on any input, and no input other
// than the genuine bundle is judged TRUSTED with the genuine trust anchors.
func FuzzVerify(f *testing.F) {
	g, _ := fixtures(f)
	orig := encode(f, g, g.Records, false)
	f.Add(orig)
	f.Add(orig[:len(orig)/3])
	short := encode(f, g, g.Records[:3], false)
	f.Add(short)
	opts := trust(g)
	f.Fuzz(func(t *testing.T, in []byte) {
		rep, err := audit.Verify(bytes.NewReader(in), opts...)
		if err != nil {
			return
		}
		if rep.Verdict == audit.Trusted && !bytes.Equal(in, orig) && !bytes.Equal(in, short) {
			t.Fatalf("a changed bundle was judged TRUSTED")
		}
	})
}
