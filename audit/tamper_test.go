package audit_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand"
	"os"
	"reflect"
	"runtime"
	"sync"
	"testing"

	"github.com/ratatouille/rat/audit"
	"github.com/ratatouille/rat/evidence/bundle"
	"github.com/ratatouille/rat/evidence/eventlog"
	"github.com/ratatouille/rat/evidence/protocol"
)

// endStart finds where the end element begins: the one offset whose
// prefix digest the end element carries.
func endStart(t testing.TB, b []byte) int {
	for k := len(b) - 1; k > len(b)-400 && k > 0; k-- {
		d := sha256.Sum256(b[:k])
		if bytes.Contains(b[k:], d[:]) {
			return k
		}
	}
	t.Fatal("no end element found")
	return 0
}

// reseal recomputes the (unauthenticated) summary digest after a
// mutation, as an attacker would, so that the deep checks are what must
// catch the change.
func reseal(b []byte, end int, orig []byte) []byte {
	od := sha256.Sum256(orig[:end])
	nd := sha256.Sum256(b[:end])
	return append(b[:end:end], bytes.Replace(b[end:], od[:], nd[:], 1)...)
}

// normalized decodes a bundle and blanks the fields the report declares
// unauthenticated labels (device times, EAT labels, policy names and
// start, hub verdicts, the hub key and trusted root copies the auditor
// never uses): two bundles equal after this say the same proven things.
func normalized(b []byte) (any, error) {
	d, err := bundle.NewDecoder(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	h := *d.Header()
	h.Token.Issuer, h.Token.Subject, h.Token.IAT, h.Token.SpanFrom, h.Token.SpanTo = "", "", 0, 0, 0
	h.HubKey, h.TrustedRoot = nil, nil
	out := []any{h}
	for {
		it, err := d.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		switch v := it.(type) {
		case *protocol.Evidence:
			c := *v
			c.Time = 0
			c.EventLog = nil
			out = append(out, c, firmwareDigests(v.EventLog))
		case *bundle.Policy:
			c := *v
			c.Name, c.Since, c.FromSeq = "", 0, 0
			// The Sigstore bundle is not evidence but the proof of who
			// signed the document, and the report states (and the auditor
			// pins) the signer: its envelope is not signed (its media type
			// v0.3 read as v0.2 still verifies, found by make tamper-all).
			c.SigstoreBundle = nil
			out = append(out, c)
		}
	}
}

// firmwareDigests keeps what the event-log check proves: each event's
// digests into the quoted PCRs 0-9. Event types and data of events whose
// digest is not over their data, and events into PCRs the quote leaves
// out (reported as measured_boot.pcr_not_quoted), are the log's labels.
func firmwareDigests(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	l, err := eventlog.Parse(b)
	if err != nil {
		return err.Error()
	}
	var out [][]eventlog.Digest
	for _, e := range l.Events {
		if e.PCR <= 9 && e.Type != eventlog.EvNoAction {
			out = append(out, e.Digests)
		}
	}
	return out
}

// TestByteTamper flips bytes one at a time: a sampled subset normally,
// every byte with RAT_TAMPER_ALL=1 (make tamper-all). Each mutated bundle
// is judged twice: as is (the summary digest must catch it), and resealed
// with a recomputed digest (the deep checks must catch it, unless only an
// unauthenticated label changed). Never TRUSTED, never a panic.
func TestByteTamper(t *testing.T) {
	f, _ := fixtures(t)
	orig := encode(t, f, f.Records, false)
	end := endStart(t, orig)
	want, err := normalized(orig)
	if err != nil {
		t.Fatal(err)
	}
	positions := make([]int, 0, end)
	if os.Getenv("RAT_TAMPER_ALL") == "1" {
		for i := 0; i < end; i++ {
			positions = append(positions, i)
		}
	} else {
		r := rand.New(rand.NewSource(int64(len(orig))))
		// The header and the first elements densely, the rest sampled.
		for i := 0; i < 160 && i < end; i++ {
			positions = append(positions, i)
		}
		for i := 0; i < 160; i++ {
			positions = append(positions, 160+r.Intn(end-160))
		}
	}
	opts := trust(f)
	// Verify is pure, so positions are checked on every core at once.
	var mu sync.Mutex
	labelsOnly := 0
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range work {
				i, xor := positions[n], []byte{0x01, 0x80}[n%2]
				b := bytes.Clone(orig)
				b[i] ^= xor
				if rep, err := audit.Verify(bytes.NewReader(b), opts...); err == nil && rep.Verdict == audit.Trusted {
					t.Errorf("byte %d ^%#x: TRUSTED without resealing", i, xor)
					continue
				}
				rs := reseal(b, end, orig)
				rep, err := audit.Verify(bytes.NewReader(rs), opts...)
				if err != nil || rep.Verdict != audit.Trusted {
					continue
				}
				got, err := normalized(rs)
				if err != nil || !reflect.DeepEqual(got, want) {
					t.Errorf("byte %d ^%#x: resealed bundle with changed evidence judged TRUSTED\n%s", i, xor, dump(t, rep))
					continue
				}
				mu.Lock()
				labelsOnly++
				mu.Unlock()
			}
		}()
	}
	for n := range positions {
		if t.Failed() {
			break
		}
		work <- n
	}
	close(work)
	wg.Wait()
	t.Logf("%d positions, %d mutations changed only unauthenticated labels", len(positions), labelsOnly)
}
