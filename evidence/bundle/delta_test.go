package bundle

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/veraison/cmw"

	"github.com/ratatouille/rat/evidence/protocol"
)

// quoted is a quoted record with PCRs 0-10 of the sha256 bank: PCR i
// holds fill(i).
func quoted(seq uint64, fill func(i int) byte) *protocol.Evidence {
	r := &protocol.Evidence{Seq: seq, Claims: []byte{0xa0}, Attest: []byte("attest"), Signature: []byte("sig"),
		PCRs: map[uint16]map[int][]byte{0x0b: {}}, IMAStart: seq}
	for i := 0; i <= 10; i++ {
		r.PCRs[0x0b][i] = bytes.Repeat([]byte{fill(i)}, 32)
	}
	return r
}

func boot(int) byte { return 1 }

// imaMoved is the usual case: only PCR 10 changed since the last quote.
func imaMoved(n byte) func(int) byte {
	return func(i int) byte {
		if i == 10 {
			return n
		}
		return 1
	}
}

// decodeRecords returns the media types of the records as written and the
// records as decoded.
func decodeRecords(t *testing.T, b []byte) ([]string, []*protocol.Evidence) {
	t.Helper()
	var types []string
	r := bytes.NewReader(b)
	// The media types, read with veraison/cmw element by element.
	d, err := NewDecoder(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var recs []*protocol.Evidence
	for {
		it, err := d.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if e, ok := it.(*protocol.Evidence); ok {
			recs = append(recs, e)
		}
	}
	br := bufio.NewReader(r)
	for {
		el, err := readElement(br, MaxElement)
		if err != nil {
			break
		}
		c, err := decodeCMW(el)
		if err != nil {
			t.Fatal(err)
		}
		if c.GetKind() == cmw.KindMonad {
			mt, _ := c.GetMonadType()
			types = append(types, mt)
		}
	}
	return types, recs
}

// Delta records: each quoted record after the first is written without
// the PCR values it shares with the previous quoted one, and decodes to
// exactly the record that was written, whose protocol encoding is the
// original bytes.
func TestDeltaRecords(t *testing.T) {
	chunk := &protocol.Evidence{Seq: 3, IMAStart: 3, IMA: []byte{1, 2, 3}}
	lessPCRs := quoted(5, imaMoved(5))
	delete(lessPCRs.PCRs[0x0b], 9)
	cases := []struct {
		name  string
		full  bool
		recs  []*protocol.Evidence
		types []string
	}{
		{"PCR 10 moves", false, []*protocol.Evidence{quoted(1, boot), quoted(2, imaMoved(2)), chunk, quoted(4, imaMoved(4))},
			[]string{MediaRecord, MediaRecordDelta, MediaRecord, MediaRecordDelta}},
		{"heartbeat: nothing changed", false, []*protocol.Evidence{quoted(1, boot), quoted(2, boot)},
			[]string{MediaRecord, MediaRecordDelta}},
		{"every PCR changed", false, []*protocol.Evidence{quoted(1, boot), quoted(2, func(i int) byte { return byte(i + 2) })},
			[]string{MediaRecord, MediaRecord}},
		{"fewer PCRs than the previous quote", false, []*protocol.Evidence{quoted(4, imaMoved(4)), lessPCRs, quoted(6, imaMoved(6))},
			[]string{MediaRecord, MediaRecord, MediaRecordDelta}},
		{"WithFullRecords", true, []*protocol.Evidence{quoted(1, boot), quoted(2, imaMoved(2))},
			[]string{MediaRecord, MediaRecord}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t, false, 0)
			var buf bytes.Buffer
			var opts []EncodeOption
			if tc.full {
				opts = append(opts, WithFullRecords())
			}
			enc, err := NewEncoder(&buf, fx.header, opts...)
			if err != nil {
				t.Fatal(err)
			}
			var raws [][]byte
			for _, r := range tc.recs {
				b, err := protocol.Marshal(r)
				if err != nil {
					t.Fatal(err)
				}
				raws = append(raws, b)
				if err := enc.WriteEncodedRecord(b); err != nil {
					t.Fatal(err)
				}
			}
			if err := enc.Close(); err != nil {
				t.Fatal(err)
			}
			types, got := decodeRecords(t, buf.Bytes())
			if !reflect.DeepEqual(types, tc.types) {
				t.Fatalf("written as %v, want %v", types, tc.types)
			}
			for i, r := range got {
				b, err := protocol.Marshal(r)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(b, raws[i]) {
					t.Fatalf("record %d decodes to other bytes than were written", r.Seq)
				}
			}
		})
	}
}

// The decoder refuses delta records that would let one record have two
// encodings, or that have nothing to start from.
func TestDeltaRefused(t *testing.T) {
	elided := func(r *protocol.Evidence, keep ...int) *protocol.Evidence {
		c := *r
		c.PCRs = map[uint16]map[int][]byte{0x0b: {}}
		for _, i := range keep {
			c.PCRs[0x0b][i] = r.PCRs[0x0b][i]
		}
		return &c
	}
	noQuote := elided(quoted(2, imaMoved(2)), 10)
	noQuote.Attest, noQuote.Signature, noQuote.Claims = nil, nil, nil
	all := make([]int, 11)
	for i := range all {
		all[i] = i
	}
	cases := []struct {
		name   string
		before []*protocol.Evidence // written whole
		delta  *protocol.Evidence
		want   string
	}{
		{"no previous quoted record", nil, elided(quoted(1, boot), 10), "without a previous quoted record"},
		{"after an IMA-only chunk only", []*protocol.Evidence{{Seq: 1, IMA: []byte{1}}}, elided(quoted(2, boot), 10), "without a previous quoted record"},
		{"repeats an unchanged value", []*protocol.Evidence{quoted(1, boot)}, elided(quoted(2, imaMoved(2)), 9, 10), "repeats PCR 9"},
		{"leaves out nothing", []*protocol.Evidence{quoted(1, boot)}, elided(quoted(2, func(i int) byte { return byte(i + 2) }), all...), "leaves out no PCR"},
		{"no quote", []*protocol.Evidence{quoted(1, boot)}, noQuote, "without a quote"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t, false, 0)
			var buf bytes.Buffer
			enc, err := NewEncoder(&buf, fx.header, WithFullRecords())
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range tc.before {
				if err := enc.WriteRecord(r); err != nil {
					t.Fatal(err)
				}
			}
			v, err := protocol.Marshal(tc.delta)
			if err != nil {
				t.Fatal(err)
			}
			m, err := cmw.NewMonad(MediaRecordDelta, v)
			if err != nil {
				t.Fatal(err)
			}
			el, err := m.MarshalCBOR()
			if err != nil {
				t.Fatal(err)
			}
			buf.Write(el)
			d, err := NewDecoder(bytes.NewReader(buf.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			for {
				_, err = d.Next()
				if err != nil {
					break
				}
			}
			if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a format error saying %q", err, tc.want)
			}
		})
	}
}
