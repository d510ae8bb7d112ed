package eventlog

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: whatever parses must encode back to the same bytes, and
// replay, Verify and SecureBoot must not panic on it.
func FuzzParse(f *testing.F) {
	for _, n := range logs {
		b, err := os.ReadFile(filepath.Join("testdata", n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		if l, err := Parse(b); err == nil && len(l.Events) > 12 {
			// A short prefix keeps the mutator near the header.
			short := &Log{Format: l.Format, Header: l.Header, Banks: l.Banks, Events: l.Events[:12]}
			f.Add(short.Marshal())
		}
	}
	f.Add(make([]byte, 32))
	f.Fuzz(func(t *testing.T, in []byte) {
		l, err := Parse(in)
		if err != nil {
			return
		}
		if !bytes.Equal(l.Marshal(), in) {
			t.Fatal("Marshal(Parse(x)) != x")
		}
		for _, b := range l.Banks {
			if q, err := l.Replay(b.Alg); err == nil {
				_ = Verify(l, b.Alg, q)
			}
		}
		if st, err := l.SecureBoot(); err == nil {
			_ = st.Complete()
		}
	})
}
