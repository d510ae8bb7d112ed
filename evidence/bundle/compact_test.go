package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/ratatouille/rat/evidence/claims"
	"github.com/ratatouille/rat/evidence/ima"
	"github.com/ratatouille/rat/evidence/protocol"
	"github.com/ratatouille/rat/evidence/quote"
)

// device makes records shaped as the agent makes them: deterministic
// claims, a TPMS_ATTEST whose extraData and pcrDigest are what a TPM
// computes, PCRs 0-10 replayed from the IMA entries, reboots, IMA-only
// chunks, entries the policy lists and entries it does not. Signatures are
// random bytes (the bundle format does not check them; audit's tests use a
// real TPM).
type device struct {
	rng        *rand.Rand
	ueid       []byte
	seq        uint64
	boot       int
	bootID     string
	reset      uint32
	clock      uint64
	imaCount   uint64
	pcr10      []byte
	prevQuote  []byte
	selfIssued bool
	// listed makes every entry one the policy lists; perQuote fixes the
	// entries per record (else 0-24) and turns IMA-only chunks off.
	listed   bool
	perQuote int
	policy   map[string][]string // path -> hex digests
	paths    []string
	dropped  map[string]bool // files the policy no longer lists
}

func newDevice(seed uint64, ueid []byte, files int) *device {
	d := &device{rng: rand.New(rand.NewPCG(seed, 1)), ueid: ueid, policy: map[string][]string{}, dropped: map[string]bool{}}
	for i := 0; i < files; i++ {
		p := fmt.Sprintf("/usr/lib/pkg%d/file%d.so", i%37, i)
		h := sha256.Sum256([]byte(p))
		d.policy[p] = []string{hex.EncodeToString(h[:])}
		if i%5 == 0 { // a second allowed version of some files
			h2 := sha256.Sum256([]byte(p + "v2"))
			d.policy[p] = append(d.policy[p], hex.EncodeToString(h2[:]))
		}
		d.paths = append(d.paths, p)
	}
	d.reboot()
	return d
}

func (d *device) policyDoc(t testing.TB) []byte {
	listed := map[string][]string{}
	for p, ds := range d.policy {
		if !d.dropped[p] {
			listed[p] = ds
		}
	}
	b, err := json.Marshal(map[string]any{"meta": map[string]int{"version": 1}, "digests": listed})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (d *device) reboot() {
	d.boot++
	d.reset++
	d.bootID = fmt.Sprintf("boot-%04d-aaaa-bbbb-cccc-%012d", d.boot, d.boot)
	d.imaCount = 0
	d.pcr10 = make([]byte, 32)
}

// entry is one IMA entry: mostly one the policy lists, sometimes not.
func (d *device) entry(t testing.TB) []byte {
	p := d.paths[d.rng.IntN(len(d.paths))]
	dg, _ := hex.DecodeString(d.policy[p][d.rng.IntN(len(d.policy[p]))])
	var raw []byte
	k := d.rng.IntN(20)
	if d.listed {
		k = 4
	}
	switch {
	case k == 0: // not in the policy
		h := sha256.Sum256([]byte(fmt.Sprint(d.rng.Uint64())))
		dg = h[:]
		fallthrough
	case k > 3:
		e, err := ima.NewNgEntry(10, "sha256", dg, p)
		if err != nil {
			t.Fatal(err)
		}
		raw = ima.MarshalBinary([]ima.Entry{e})
	case k == 1: // a violation: template hash zero
		e, _ := ima.NewNgEntry(10, "sha256", dg, p)
		e.TemplateHash = make([]byte, 20)
		raw = ima.MarshalBinary([]ima.Entry{e})
	case k == 2: // listed, but the template hash is not the kernel's
		e, _ := ima.NewNgEntry(10, "sha256", dg, p)
		e.TemplateHash = bytes.Repeat([]byte{7}, 20)
		raw = ima.MarshalBinary([]ima.Entry{e})
	case k == 3: // ima-sig with a signature
		e, _ := ima.NewNgEntry(10, "sha256", dg, p)
		td := binary.LittleEndian.AppendUint32(append([]byte(nil), e.TemplateData...), 3)
		td = append(td, 3, 2, 1)
		e.TemplateName, e.TemplateData = "ima-sig", td
		raw = ima.MarshalBinary([]ima.Entry{e})
	}
	es, err := ima.ParseBinary(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	h.Write(d.pcr10)
	if es[0].IsViolation() {
		h.Write(bytes.Repeat([]byte{0xff}, 32))
	} else {
		td := sha256.Sum256(es[0].TemplateData)
		h.Write(td[:])
	}
	d.pcr10 = h.Sum(nil)
	return raw
}

// next returns the next record: quoted, or (sometimes) an IMA-only chunk.
func (d *device) next(t testing.TB) *protocol.Evidence {
	d.seq++
	r := &protocol.Evidence{V: protocol.Version, Seq: d.seq, IMAStart: d.imaCount, Time: int64(1_800_000_000 + 10*d.seq)}
	n := d.rng.IntN(25)
	if d.perQuote > 0 {
		n = d.perQuote
	}
	for i := 0; i < n; i++ {
		r.IMA = append(r.IMA, d.entry(t)...)
	}
	d.imaCount += uint64(n)
	if d.perQuote == 0 && d.rng.IntN(10) == 0 && n > 0 {
		return r // IMA-only chunk
	}
	c := &claims.Claims{Nonce: make([]byte, 32), UEID: d.ueid, BootID: d.bootID, Release: "rel-7", Seq: d.seq, Prev: d.prevQuote, IMACount: d.imaCount, SelfIssued: d.selfIssued}
	if d.selfIssued {
		c.Nonce = claims.SelfNonce(d.prevQuote, d.seq)
	} else {
		for i := range c.Nonce {
			c.Nonce[i] = byte(d.rng.Uint32())
		}
	}
	if d.rng.IntN(50) == 0 {
		c.IMACount += 2 // the kernel logged more before the quote
	}
	cl, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	r.Claims = cl
	r.PCRs = map[uint16]map[int][]byte{quote.AlgSHA256: {}}
	for i := 0; i < 10; i++ {
		r.PCRs[quote.AlgSHA256][i] = bytes.Repeat([]byte{byte(d.boot), byte(i)}, 16)
	}
	r.PCRs[quote.AlgSHA256][10] = d.pcr10
	d.clock += 10_000 + uint64(d.rng.IntN(100))
	a := &quote.Attest{Magic: quote.GeneratedValue, Type: quote.TagAttestQuote, QualifiedSigner: bytes.Repeat([]byte{0x0b, 0x11}, 17),
		ExtraData: claims.QualifyingData(cl), ClockInfo: quote.ClockInfo{Clock: d.clock, ResetCount: d.reset, Safe: true}, FirmwareVersion: 0x2020_0101,
		PCRSelections: []quote.PCRSelection{{Hash: quote.AlgSHA256, Size: 3, PCRs: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}}}
	a.PCRDigest, err = pcrDigest(a.PCRSelections, r.PCRs)
	if err != nil {
		t.Fatal(err)
	}
	r.Attest = a.Marshal()
	r.Signature = make([]byte, 72)
	for i := range r.Signature {
		r.Signature[i] = byte(d.rng.Uint32())
	}
	d.prevQuote = claims.QuoteDigest(r.Attest, r.Signature)
	return r
}

// TestCompactRoundTrip: every record decodes to the agent's exact bytes,
// whatever form it was written in; a typical quote shrinks to a few
// hundred bytes and the forms are what the encoder is meant to choose.
func TestCompactRoundTrip(t *testing.T) {
	fx := newFixture(t, false, 0)
	dev := newDevice(1, fx.header.Token.UEID, 300)
	var want [][]byte
	var buf bytes.Buffer
	enc, err := NewEncoder(&buf, fx.header)
	if err != nil {
		t.Fatal(err)
	}
	write := func(r *protocol.Evidence) {
		b, err := protocol.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, b)
		if err := enc.WriteEncodedRecord(b); err != nil {
			t.Fatalf("record %d: %v", r.Seq, err)
		}
	}
	// Records before any policy: entries are written as they are.
	for i := 0; i < 5; i++ {
		write(dev.next(t))
	}
	if err := enc.WritePolicy(&Policy{Name: "p1", Document: dev.policyDoc(t)}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 400; i++ {
		switch i {
		case 100:
			dev.reboot()
		case 200:
			dev.selfIssued = true // offline: self-issued nonces
		case 250:
			dev.selfIssued = false
			dev.prevQuote = nil // re-enrolled: no previous quote in the claims
		case 300: // a new policy that no longer lists some files
			for _, p := range dev.paths[:100] {
				dev.dropped[p] = true
			}
			if err := enc.WritePolicy(&Policy{Name: "p2", Document: dev.policyDoc(t)}); err != nil {
				t.Fatal(err)
			}
		}
		write(dev.next(t))
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	types, recs := decodeRecords(t, buf.Bytes())
	if len(recs) != len(want) {
		t.Fatalf("decoded %d records, wrote %d", len(recs), len(want))
	}
	for i, r := range recs {
		got, err := protocol.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want[i]) {
			t.Fatalf("record %d decodes to other bytes than were written (%s)", r.Seq, types[i])
		}
	}
	count := map[string]int{}
	for _, mt := range types {
		count[mt]++
	}
	if count[MediaRecordCompact] < len(want)*9/10 {
		t.Errorf("only %d of %d records compact: %v", count[MediaRecordCompact], len(want), count)
	}
	// Against the same records as delta records.
	var delta bytes.Buffer
	denc, err := NewEncoder(&delta, fx.header, WithDeltaRecords())
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range want {
		if err := denc.WriteEncodedRecord(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := denc.Close(); err != nil {
		t.Fatal(err)
	}
	dtypes, _ := decodeRecords(t, delta.Bytes())
	for _, mt := range dtypes {
		if mt == MediaRecordCompact {
			t.Fatal("WithDeltaRecords wrote a compact record")
		}
	}
	t.Logf("%d records: compact bundle %d B, delta bundle %d B (without the policies); forms %v", len(want), buf.Len(), delta.Len(), count)
}

// TestCompactQuoteSize: a heartbeat quote with 12 IMA entries the policy
// lists is within issue 10's 400 bytes per quote, framing included, once
// there is a previous quote; the delta record of the same quote is not.
func TestCompactQuoteSize(t *testing.T) {
	fx := newFixture(t, false, 0)
	dev := newDevice(2, fx.header.Token.UEID, 50)
	dev.listed, dev.perQuote = true, 12
	var buf bytes.Buffer
	enc, err := NewEncoder(&buf, fx.header)
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.WritePolicy(&Policy{Name: "p", Document: dev.policyDoc(t)}); err != nil {
		t.Fatal(err)
	}
	var delta bytes.Buffer
	denc, err := NewEncoder(&delta, fx.header, WithDeltaRecords())
	if err != nil {
		t.Fatal(err)
	}
	before, dbefore := buf.Len(), delta.Len()
	const n = 100
	for i := 0; i < n; i++ {
		r := dev.next(t)
		if i == 1 {
			before, dbefore = buf.Len(), delta.Len()
		}
		if err := enc.WriteRecord(r); err != nil {
			t.Fatal(err)
		}
		if err := denc.WriteRecord(r); err != nil {
			t.Fatal(err)
		}
	}
	per, dper := (buf.Len()-before)/(n-1), (delta.Len()-dbefore)/(n-1)
	t.Logf("bytes per quote with 12 listed entries: compact %d, delta %d", per, dper)
	if per > 400 {
		t.Errorf("compact record of a quote with 12 listed entries: %d bytes, over 400", per)
	}
	if dper <= 400 {
		t.Errorf("delta record %d bytes: the test no longer measures what compact records leave out", dper)
	}
}

// TestCompactRefuses: a compact record that another encoder could have
// written differently, or that expands beyond what the protocol allows,
// is a format error, not a second encoding of the same record.
func TestCompactRefuses(t *testing.T) {
	fx := newFixture(t, false, 0)
	dev := newDevice(3, fx.header.Token.UEID, 50)
	doc := dev.policyDoc(t)
	// A state with a previous quote, and the next quoted record.
	s, err := newCompactState(fx.header)
	if err != nil {
		t.Fatal(err)
	}
	s.policy(doc)
	var prev, r *protocol.Evidence
	for r == nil || r.Attest == nil || len(r.IMA) == 0 || prev == nil {
		if r != nil && r.Attest != nil {
			s.advance(r)
			prev = r
		}
		r = dev.next(t)
	}
	b, _ := protocol.Marshal(r)
	v, err := s.compact(r, b)
	if err != nil || v == nil {
		t.Fatalf("compact: %v, %d bytes", err, len(v))
	}
	if got, err := s.expand(v); err != nil {
		t.Fatal(err)
	} else if again, _ := protocol.Marshal(got); !bytes.Equal(again, b) {
		t.Fatal("the untouched compact record does not expand to the record")
	}
	mutate := func(f func(cr *compactRecord)) []byte {
		var cr compactRecord
		if err := decMode.Unmarshal(v, &cr); err != nil {
			t.Fatal(err)
		}
		f(&cr)
		out, err := encMode.Marshal(&cr)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	residue := func(cr *compactRecord, f func(m map[int64]cbor.RawMessage)) {
		var m map[int64]cbor.RawMessage
		if err := cbor.Unmarshal(cr.Claims, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		cr.Claims, _ = encMode.Marshal(m)
	}
	attest := func(cr *compactRecord, f func(a *attestResidue)) {
		var a attestResidue
		if err := decMode.Unmarshal(cr.Attest, &a); err != nil {
			t.Fatal(err)
		}
		f(&a)
		cr.Attest, _ = encMode.Marshal(&a)
	}
	raw := func(cr *compactRecord, i int) []byte {
		var idx uint64
		if err := cbor.Unmarshal(cr.IMA[i], &idx); err != nil {
			t.Skip("first IMA item is not an index in this seed")
		}
		s.dictionary()
		pr := s.dict.pairs[idx]
		e, _ := ngEntry(pr.path, pr.digest)
		return e
	}
	u32 := func(v uint32) *uint32 { return &v }
	for _, tc := range []struct {
		name, want string
		value      []byte
	}{
		{"derivable UEID written out", "repeats derivable claim 256", mutate(func(cr *compactRecord) {
			residue(cr, func(m map[int64]cbor.RawMessage) { m[claims.KeyUEID] = s.ueid })
		})},
		{"derivable seq written out", "repeats derivable claim -70001", mutate(func(cr *compactRecord) {
			residue(cr, func(m map[int64]cbor.RawMessage) { m[claims.KeySeq], _ = encMode.Marshal(cr.Seq) })
		})},
		{"null for a claim with nothing to derive", "null for claim 10", mutate(func(cr *compactRecord) {
			residue(cr, func(m map[int64]cbor.RawMessage) { m[claims.KeyNonce] = cborNull })
		})},
		{"attest repeats the previous reset count", "repeats a field", mutate(func(cr *compactRecord) {
			attest(cr, func(a *attestResidue) { a.ResetCount = u32(dev.reset) })
		})},
		{"a listed entry written out", "must be its index", mutate(func(cr *compactRecord) {
			cr.IMA[0], _ = encMode.Marshal(raw(cr, 0))
		})},
		{"an index past the policy", "the policy in force lists", mutate(func(cr *compactRecord) {
			cr.IMA[0], _ = encMode.Marshal(uint64(1 << 40))
		})},
		{"an IMA item of another type", "neither an index nor an entry", mutate(func(cr *compactRecord) {
			cr.IMA[0] = cbor.RawMessage{0x60}
		})},
		{"two entries in one item", "is not one entry", mutate(func(cr *compactRecord) {
			e := raw(cr, 0)
			cr.IMA[0], _ = encMode.Marshal(append(append([]byte(nil), e...), e...))
		})},
		{"a PCR value repeated", "repeats PCR 0", mutate(func(cr *compactRecord) {
			if cr.PCRs == nil {
				cr.PCRs = map[uint16]map[int][]byte{}
			}
			if cr.PCRs[quote.AlgSHA256] == nil {
				cr.PCRs[quote.AlgSHA256] = map[int][]byte{}
			}
			cr.PCRs[quote.AlgSHA256][0] = prev.PCRs[quote.AlgSHA256][0]
		})},
		{"claims without a quote", "without a quote", mutate(func(cr *compactRecord) { cr.Attest = nil })},
		{"an expansion over the IMA chunk bound", "IMA entries over", mutate(func(cr *compactRecord) {
			for len(cr.IMA) < protocol.MaxIMAChunk/100 {
				cr.IMA = append(cr.IMA, cr.IMA[len(cr.IMA)-1])
			}
		})},
		{"not deterministic", "deterministic", append([]byte{0xb9, 0x00, v[0] & 0x1f}, v[1:]...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.expand(tc.value)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("expand = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	// Without a previous quote the residue must carry every field.
	fresh, _ := newCompactState(fx.header)
	fresh.policy(doc)
	if _, err := fresh.expand(v); err == nil || !strings.Contains(err.Error(), "leaves out a field") {
		t.Fatalf("expand without the previous quote = %v", err)
	}
}
