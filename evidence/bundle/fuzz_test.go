package bundle

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"

	"github.com/ratatouille/rat/evidence/protocol"
)

// FuzzDecode: the decoder never panics, never accepts trailing data, and
// whatever it accepts re-encodes to exactly the input (one bundle, one
// encoding).
func FuzzDecode(f *testing.F) {
	fx := newFixture(f, true, 4)
	f.Add(fx.encoded)
	f.Add(newFixture(f, false, 1).encoded)
	f.Add(fx.encoded[:fx.endStart])
	f.Add([]byte{0xa0})
	f.Add([]byte{0x82, 0x61, 0x61, 0x41, 0x00})
	_, _, compact := compactSeeds(f)
	f.Add(compact)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	f.Fuzz(func(t *testing.T, in []byte) {
		d, items, err := decodeAll(in)
		if err != nil {
			return
		}
		var buf bytes.Buffer
		enc, err := NewEncoder(&buf, d.Header())
		if err != nil {
			t.Fatalf("accepted header does not re-encode: %v", err)
		}
		for _, it := range items {
			switch v := it.(type) {
			case *Policy:
				err = enc.WritePolicy(v)
			case *Verdict:
				err = enc.WriteVerdict(v)
			default:
				_ = v
			}
			if err != nil {
				t.Fatalf("accepted item does not re-encode: %v", err)
			}
		}
		_ = VerifyEnd(d.End(), &key.PublicKey)
		_, _ = VerifyBinding(d.Header().Binding, &key.PublicKey)
	})
}

// compactSeeds writes a short bundle of compact records (a policy, a
// reboot, IMA-only chunks) for the fuzzers' corpora.
func compactSeeds(f *testing.F) (*fixture, *device, []byte) {
	fx := newFixture(f, false, 0)
	dev := newDevice(9, fx.header.Token.UEID, 40)
	var buf bytes.Buffer
	enc, err := NewEncoder(&buf, fx.header)
	if err != nil {
		f.Fatal(err)
	}
	if err := enc.WritePolicy(&Policy{Name: "p", Document: dev.policyDoc(f)}); err != nil {
		f.Fatal(err)
	}
	for i := 0; i < 6; i++ {
		if i == 3 {
			dev.reboot()
		}
		if err := enc.WriteRecord(dev.next(f)); err != nil {
			f.Fatal(err)
		}
	}
	if err := enc.Close(); err != nil {
		f.Fatal(err)
	}
	return fx, dev, buf.Bytes()
}

// FuzzCompactExpand: a compact record either fails to expand or is the
// one compact encoding of what it expands to (compacting the expansion
// gives back the input), so no record has two.
func FuzzCompactExpand(f *testing.F) {
	fx, dev, _ := compactSeeds(f)
	s, err := newCompactState(fx.header)
	if err != nil {
		f.Fatal(err)
	}
	s.policy(dev.policyDoc(f))
	var prev *protocol.Evidence
	for i := 0; i < 8; i++ {
		r := dev.next(f)
		b, _ := protocol.Marshal(r)
		if v, err := s.compact(r, b); err == nil && v != nil {
			f.Add(v, i%2 == 0)
		}
		if r.Quoted() && prev == nil {
			prev = r
		}
	}
	f.Fuzz(func(t *testing.T, v []byte, withPrev bool) {
		st, _ := newCompactState(fx.header)
		st.policy(dev.policyDoc(t))
		if withPrev {
			st.advance(prev)
		}
		r, err := st.expand(v)
		if err != nil {
			return
		}
		b, err := protocol.Marshal(r)
		if err != nil {
			t.Fatalf("expanded record does not marshal: %v", err)
		}
		again, err := st.compact(r, b)
		if err != nil || !bytes.Equal(again, v) {
			t.Fatalf("expand then compact gives %x (%v), want the input %x", again, err, v)
		}
	})
}
