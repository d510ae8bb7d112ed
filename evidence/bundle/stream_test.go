package bundle

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"testing"

	"github.com/ratatouille/rat/evidence/protocol"
)

// day is a day of evidence of one device: a quote every 10 s (8,640) and
// 100k IMA entries of about 150 bytes, spread over the quotes.
const (
	dayQuotes  = 8640
	dayEntries = 100_000
	entrySize  = 150
)

// writeDay encodes a day's bundle to w, generating one record at a time.
func writeDay(fx *fixture, w io.Writer) error {
	enc, err := NewEncoder(w, fx.header)
	if err != nil {
		return err
	}
	if err := enc.WritePolicy(fx.policy); err != nil {
		return err
	}
	per := dayEntries / dayQuotes
	r := &protocol.Evidence{
		Claims: bytes.Repeat([]byte{0xa0}, 150), Attest: bytes.Repeat([]byte{1}, 145), Signature: bytes.Repeat([]byte{2}, 72),
		PCRs: map[uint16]map[int][]byte{0x0b: {}},
	}
	for i := 0; i <= 10; i++ {
		r.PCRs[0x0b][i] = bytes.Repeat([]byte{byte(i)}, 32)
	}
	ima := bytes.Repeat([]byte{0x5a}, per*entrySize)
	for i := 1; i <= dayQuotes; i++ {
		r.Seq, r.IMAStart, r.IMA, r.Time = uint64(i), uint64((i-1)*per), ima, int64(i*10)
		if err := enc.WriteRecord(r); err != nil {
			return err
		}
	}
	return enc.Close()
}

type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// A day streams through a pipe: the decoder never holds more than one
// element, so the live heap stays far below the bundle's size while it is
// read (measured after a GC every 500 records, not timed).
func TestStreamDay(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	fx := newFixture(t, false, 0)
	var size counter
	if err := writeDay(fx, &size); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeDay(fx, pw)) }()
	d, err := NewDecoder(pr)
	if err != nil {
		t.Fatal(err)
	}
	var peak uint64
	n := 0
	for {
		it, err := d.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := it.(*protocol.Evidence); ok {
			n++
		}
		if n%500 == 0 {
			runtime.GC()
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapAlloc)
		}
	}
	if n != dayQuotes || d.End().Summary.Quotes != dayQuotes {
		t.Fatalf("%d records, summary %+v", n, d.End().Summary)
	}
	if peak > uint64(size.n)/4 {
		t.Fatalf("live heap reached %d bytes for a %d-byte bundle: the decoder is buffering", peak, size.n)
	}
	t.Logf("bundle %d bytes, peak live heap %d bytes", size.n, peak)
}

// BenchmarkDecodeDay: decoding a day of evidence (for the benchmark
// issue; docs/benchmarks.md).
func BenchmarkDecodeDay(b *testing.B) {
	var buf bytes.Buffer
	if err := writeDay(newFixture(b, false, 0), &buf); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(buf.Len()))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d, err := NewDecoder(bytes.NewReader(buf.Bytes()))
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := d.Next(); err != nil {
				if !errors.Is(err, io.EOF) {
					b.Fatal(err)
				}
				break
			}
		}
	}
}
