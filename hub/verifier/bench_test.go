package verifier

import (
	"crypto"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/ratatouille/rat/evidence/claims"
	"github.com/ratatouille/rat/evidence/ima"
	"github.com/ratatouille/rat/evidence/protocol"
	"github.com/ratatouille/rat/evidence/quote"
	"github.com/ratatouille/rat/evidence/runtimepolicy"
	"github.com/ratatouille/rat/hub/store"
)

// BenchmarkEvidenceDelta is one quoted record with a 10-entry IMA delta
// judged by Verifier.Evidence (claims, nonce, quote signature and PCR
// digest, replay of the delta onto the stored PCR 10, policy), for a device
// whose boot already has 0 or 100,000 verified entries. The history is real:
// the simulator's PCR 10 was extended once per entry, and the hub's stored
// position is the replay of those entries. The per-attestation cost must
// not depend on the history (O(delta)).
func BenchmarkEvidenceDelta(b *testing.B) {
	type fixture struct {
		d   *store.Device
		raw []byte
		v   *Verifier
	}
	// The fixtures are made once (b.Run calls its function once per b.N
	// round); each needs its own simulator, which is one per process.
	var fixtures []fixture
	histories := []int{0, 100000}
	for _, history := range histories {
		func() {
			tp, ek, ak := simTPM(b)
			defer tp.Close()
			mk := func(i int) ima.Entry {
				h := sha256.Sum256([]byte{byte(i), byte(i >> 8), byte(i >> 16)})
				e, err := ima.NewNgEntry(10, "sha256", h[:], fmt.Sprintf("/usr/lib/file-%d", i))
				if err != nil {
					b.Fatal(err)
				}
				return e
			}
			extend := func(e ima.Entry) {
				d := sha256.Sum256(e.TemplateData)
				if err := tp.Extend(10, d[:]); err != nil {
					b.Fatal(err)
				}
			}
			var hist []ima.Entry
			for i := 0; i < history; i++ {
				e := mk(i)
				extend(e)
				hist = append(hist, e)
			}
			rp, err := ima.Resume(crypto.SHA256, nil, 0)
			if err != nil {
				b.Fatal(err)
			}
			if err := rp.Advance(hist); err != nil {
				b.Fatal(err)
			}
			pcr10 := rp.Value()
			var delta []ima.Entry
			for i := history; i < history+10; i++ {
				e := mk(i)
				extend(e)
				delta = append(delta, e)
			}
			pol, err := runtimepolicy.FromEntries(delta)
			if err != nil {
				b.Fatal(err)
			}
			nonce := make([]byte, 32)
			d := &store.Device{Key: "default/d", ID: "d", Fleet: "default", Group: "g", State: store.Trusted, EKPublic: ek.PublicArea, AKPublic: ak.PublicArea,
				NextSeq: 5, QuotePrev: make([]byte, 32), Nonces: []store.Nonce{{Idx: 1, Value: nonce}}, NonceUsed: 1, NonceNext: 1,
				BootID: "boot", BootStartSeq: 1, IMACount: uint64(history), PCR10: pcr10}
			if history == 0 {
				d.PCR10 = nil
			}
			c := claims.Claims{Nonce: nonce, UEID: claims.UEID(ek.PublicArea), BootID: "boot", Seq: 5, Prev: d.QuotePrev, IMACount: uint64(history + 10)}
			enc, err := c.Marshal()
			if err != nil {
				b.Fatal(err)
			}
			q, err := ak.Quote(claims.QualifyingData(enc), []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
			if err != nil {
				b.Fatal(err)
			}
			m := &protocol.Evidence{Seq: 5, Claims: enc, Attest: q.Attest, Signature: q.Signature,
				PCRs: map[uint16]map[int][]byte{quote.AlgSHA256: q.PCRs}, IMAStart: uint64(history), IMA: ima.MarshalBinary(delta)}
			raw, err := protocol.Marshal(m)
			if err != nil {
				b.Fatal(err)
			}
			v := New(Config{Policies: func(string) (*runtimepolicy.Policy, string, error) { return pol, "p", nil }})
			fixtures = append(fixtures, fixture{d: d, raw: raw, v: v})
		}()
	}
	for i, history := range histories {
		f := fixtures[i]
		b.Run(fmt.Sprintf("history=%d", history), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				var e protocol.Evidence
				if err := protocol.Unmarshal(f.raw, &e); err != nil {
					b.Fatal(err)
				}
				out := f.v.Evidence(f.d, f.raw, &e, nil)
				if a := out.Reply.(*protocol.Ack); a.Rejected || out.Device == nil || out.Device.State != store.Trusted {
					b.Fatalf("record not accepted: %+v %v", a, out.Events)
				}
			}
		})
	}
}

// BenchmarkNonceAt is the keyed nonce the hub computes twice per quoted
// record (checking the quote's, issuing the next).
func BenchmarkNonceAt(b *testing.B) {
	v := New(Config{})
	d := &store.Device{Key: "default/dev-000001", EnrolledAt: time.Now()}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if n := v.nonceAt(d, uint64(i)); len(n) != 32 {
			b.Fatal(len(n))
		}
	}
}
