package ima

import (
	"crypto"
	"errors"
	"testing"

	"github.com/ratatouille/rat/evidence/failure"
)

func TestVerifyTemplateHash(t *testing.T) {
	es := readLog(t, "keylime-tests-mixed-ima-ng-ima-buf.ascii")
	if err := VerifyTemplateHashes(es, 0); err != nil {
		t.Fatalf("real log: %v", err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Entry)
	}{
		{"digest", func(e *Entry) { e.Digest[0] ^= 1; e.TemplateData = e.buildTemplateData() }},
		{"path", func(e *Entry) { e.Path += "x"; e.TemplateData = e.buildTemplateData() }},
		{"template hash", func(e *Entry) { e.TemplateHash = append([]byte(nil), e.TemplateHash...); e.TemplateHash[19] ^= 1 }},
		{"short hash", func(e *Entry) { e.TemplateHash = e.TemplateHash[:10] }},
		{"no data", func(e *Entry) { e.TemplateData = nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := es[1]
			e.Digest = append([]byte(nil), e.Digest...)
			tc.mutate(&e)
			err := e.VerifyTemplateHash()
			var fe *failure.Error
			if !errors.As(err, &fe) || fe.Event.ID != failure.IMAParsingError {
				t.Fatalf("tampered %s: err = %v, want %s", tc.name, err, failure.IMAParsingError)
			}
		})
	}
}

func TestAdvanceTo(t *testing.T) {
	es := readLog(t, "ubuntu2404-kernel68-ima-ng-sha256.ascii")
	at := func(n int) []byte {
		v, err := Replay(es[:n], crypto.SHA256, nil)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	r, _ := NewReplayer(crypto.SHA256, nil)
	// Successive quotes; each delta is the log from the stored offset to
	// some point past the quote (the log runs ahead).
	for _, tc := range []struct{ quoteAt, logTo int }{
		{0, 5}, {10, 50}, {50, 50}, {300, 400}, {780, 780},
	} {
		off, err := r.AdvanceTo(es[r.Count():tc.logTo], at(tc.quoteAt))
		if err != nil || off != tc.quoteAt {
			t.Fatalf("quote at %d, log to %d: offset %d, %v", tc.quoteAt, tc.logTo, off, err)
		}
	}
	// A quote no prefix reaches leaves the state unchanged.
	r2, _ := NewReplayer(crypto.SHA256, nil)
	off, err := r2.AdvanceTo(es[:100], at(200))
	var fe *failure.Error
	if !errors.As(err, &fe) || fe.Event.ID != failure.IMAPCRMismatch || off != 0 || r2.Count() != 0 {
		t.Fatalf("unreachable quote: offset %d, count %d, err %v", off, r2.Count(), err)
	}
	if string(r2.Value()) != string(make([]byte, 32)) {
		t.Fatal("failed AdvanceTo changed the stored PCR value")
	}
	// A tampered entry in the delta is refused before it is extended.
	bad := append([]Entry(nil), es[:20]...)
	bad[7].Path = "/evil"
	bad[7].TemplateData = bad[7].buildTemplateData()
	r3, _ := NewReplayer(crypto.SHA256, nil)
	if _, err := r3.AdvanceTo(bad, at(20)); !errors.As(err, &fe) || fe.Event.ID != failure.IMAParsingError {
		t.Fatalf("tampered delta: %v", err)
	}
}
