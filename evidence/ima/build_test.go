package ima

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"testing"
)

func TestNewNgEntryRoundTrip(t *testing.T) {
	d := sha256.Sum256([]byte("hello"))
	e, err := NewNgEntry(10, "sha256", d[:], "/usr/bin/hello")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.VerifyTemplateHash(); err != nil {
		t.Fatal(err)
	}
	got, err := ParseBinary(bytes.NewReader(MarshalBinary([]Entry{e})))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Path != e.Path || got[0].DigestAlg != "sha256" || !bytes.Equal(got[0].Digest, d[:]) {
		t.Fatalf("%+v", got)
	}
	// Resume from a stored state gives the same value as one replay.
	all, _ := Replay([]Entry{e, e}, crypto.SHA256, nil)
	r, _ := NewReplayer(crypto.SHA256, nil)
	_ = r.Advance([]Entry{e})
	r2, err := Resume(crypto.SHA256, r.Value(), r.Count())
	if err != nil {
		t.Fatal(err)
	}
	_ = r2.Advance([]Entry{e})
	if !bytes.Equal(r2.Value(), all) || r2.Count() != 2 {
		t.Fatal("resume differs from replay")
	}
	for _, bad := range []struct{ alg, path string }{{"SHA256", "/x"}, {"", "/x"}, {"sha256", "/x\x00y"}} {
		if _, err := NewNgEntry(10, bad.alg, d[:], bad.path); err == nil {
			t.Errorf("%q %q accepted", bad.alg, bad.path)
		}
	}
}
