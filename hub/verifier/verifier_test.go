package verifier

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/ratatouille/rat/device/tpm"
	"github.com/ratatouille/rat/evidence/claims"
	"github.com/ratatouille/rat/evidence/failure"
	"github.com/ratatouille/rat/evidence/ima"
	"github.com/ratatouille/rat/evidence/protocol"
	"github.com/ratatouille/rat/evidence/quote"
	"github.com/ratatouille/rat/evidence/runtimepolicy"
	"github.com/ratatouille/rat/hub/store"
)

// simTPM opens the process's TPM simulator (one per process: the caller
// closes tp before the next) with its EK and AK.
func simTPM(tb testing.TB) (*tpm.TPM, *tpm.EK, *tpm.AK) {
	tb.Helper()
	sim, err := simulator.Get()
	if err != nil {
		tb.Fatal(err)
	}
	tp := tpm.New(transport.FromReadWriteCloser(sim))
	ek, err := tp.CreateEK()
	if err != nil {
		tp.Close()
		tb.Fatal(err)
	}
	ak, err := tp.CreateAK()
	if err != nil {
		tp.Close()
		tb.Fatal(err)
	}
	return tp, ek, ak
}

// imaRig is a simulated TPM whose PCR 10 the test extends, with the
// replay of what it extended (the hub's view of a device in good standing).
type imaRig struct {
	t      *testing.T
	tp     *tpm.TPM
	ek, ak []byte
	akq    *tpm.AK
	rp     *ima.Replayer
	next   int
	v      *Verifier
	// miscount is added to the IMA count the next quoted record claims.
	miscount int
}

func (r *imaRig) entry() ima.Entry {
	r.next++
	h := sha256.Sum256([]byte(fmt.Sprint(r.next)))
	e, err := ima.NewNgEntry(10, "sha256", h[:], fmt.Sprintf("/usr/bin/f%d", r.next))
	if err != nil {
		r.t.Fatal(err)
	}
	return e
}

// other is an entry of the log for PCR 11 (the kernel logs entries for
// other PCRs with some policies); the replay of PCR 10 skips it.
func (r *imaRig) other() ima.Entry {
	e := r.entry()
	e.PCR = 11
	return e
}

// extend extends the simulator's PCR 10 with es, as the kernel does.
func (r *imaRig) extend(es []ima.Entry) {
	for _, e := range es {
		if e.PCR != 10 {
			continue
		}
		d := sha256.Sum256(e.TemplateData)
		if err := r.tp.Extend(10, d[:]); err != nil {
			r.t.Fatal(err)
		}
	}
	if err := r.rp.Advance(es); err != nil {
		r.t.Fatal(err)
	}
}

// device is the stored record of a TRUSTED device whose verified replay is
// the simulator's PCR 10 now.
func (r *imaRig) device() *store.Device {
	return &store.Device{Key: "default/d", ID: "d", Fleet: "default", Group: "g", State: store.Trusted, EKPublic: r.ek, AKPublic: r.ak,
		NextSeq: 5, QuotePrev: make([]byte, 32), Nonces: []store.Nonce{{Idx: 1, Value: make([]byte, 32)}}, NonceUsed: 1, NonceNext: 1,
		BootID: "boot", BootStartSeq: 1, IMACount: uint64(r.rp.Count()), PCR10: r.rp.Value()}
}

// quoted is record seq quoting the simulator's PCRs now, carrying imaBytes
// from entry start on.
func (r *imaRig) quoted(d *store.Device, seq uint64, start uint64, imaBytes []byte) *protocol.Evidence {
	c := claims.Claims{Nonce: d.Nonces[0].Value, UEID: claims.UEID(r.ek), BootID: "boot", Seq: seq, Prev: d.QuotePrev, IMACount: uint64(r.rp.Count() + r.miscount)}
	enc, err := c.Marshal()
	if err != nil {
		r.t.Fatal(err)
	}
	q, err := r.akq.Quote(claims.QualifyingData(enc), []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
	if err != nil {
		r.t.Fatal(err)
	}
	return &protocol.Evidence{Seq: seq, Claims: enc, Attest: q.Attest, Signature: q.Signature,
		PCRs: map[uint16]map[int][]byte{quote.AlgSHA256: q.PCRs}, IMAStart: start, IMA: imaBytes}
}

func (r *imaRig) judge(d *store.Device, m *protocol.Evidence) Outcome {
	raw, err := protocol.Marshal(m)
	if err != nil {
		r.t.Fatal(err)
	}
	return r.v.Evidence(d, raw, m, func(uint64) ([]byte, error) { return nil, store.ErrNotFound })
}

func badHash(es []ima.Entry, i int) []ima.Entry {
	out := append([]ima.Entry(nil), es...)
	out[i].TemplateHash = append([]byte(nil), es[i].TemplateHash...)
	out[i].TemplateHash[3] ^= 1
	return out
}

// failureIDs are the ids of an outcome's failure and rejection events.
func failureIDs(o Outcome) []string {
	var ids []string
	for _, e := range o.Events {
		if e.Event != nil {
			ids = append(ids, e.Kind+":"+e.Event.ID)
		}
	}
	return ids
}

// TestEvidenceIMA covers the IMA checks of Evidence, for deltas in the
// quoted record and in held chunks: a template hash that does not match
// its template data is refused at receipt (the record is rejected, the
// device asked to resync) whether or not the PCR replay would notice; a
// held chunk that comes back from the device record altered fails the
// replay at the quote; a delta whose entries do not all replay to the
// quoted PCR 10 (an extra entry, or a shorter prefix that already matches)
// makes the device UNTRUSTED; chunks must continue each other.
func TestEvidenceIMA(t *testing.T) {
	tp, ek, ak := simTPM(t)
	defer tp.Close()
	rp, err := ima.Resume(crypto.SHA256, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	r := &imaRig{t: t, tp: tp, ek: ek.PublicArea, ak: ak.PublicArea, akq: ak, rp: rp}
	var approved []ima.Entry
	for i := 0; i < 200; i++ {
		approved = append(approved, r.entry())
	}
	r.next = 0
	pol, err := runtimepolicy.FromEntries(approved)
	if err != nil {
		t.Fatal(err)
	}
	r.v = New(Config{Policies: func(string) (*runtimepolicy.Policy, string, error) { return pol, "p", nil }})
	boot := r.entry()
	r.extend([]ima.Entry{boot})

	type step struct {
		quoted bool
		// entries extended into the TPM before this step, and the entries
		// the record carries (nil: the extended ones)
		extend, send func() []ima.Entry
		start        int // IMAStart relative to the device's count (0 unless a gap is tested)
		tamperHeld   bool
		miscount     int // added to the claims' IMA count
	}
	for _, tc := range []struct {
		name    string
		steps   func() []step
		state   string   // the device's state after the last step
		ids     []string // failure and rejection events of the last step
		count   int      // entries verified after the last step, relative to before
		pending bool     // chunks held after the last step
	}{
		{name: "quoted delta", steps: func() []step {
			es := []ima.Entry{r.entry(), r.entry(), r.entry()}
			return []step{{quoted: true, extend: func() []ima.Entry { return es }}}
		}, state: store.Trusted, count: 3},
		{name: "quoted delta, claims count one more", steps: func() []step {
			es := []ima.Entry{r.entry(), r.entry()}
			return []step{{quoted: true, extend: func() []ima.Entry { return es }, miscount: 1}}
		}, state: store.Trusted, ids: []string{"warning:" + failure.IMACountClaim}, count: 2},
		{name: "two chunks and a quote, claims count one fewer", steps: func() []step {
			a, b := []ima.Entry{r.entry(), r.entry()}, []ima.Entry{r.entry()}
			return []step{{extend: func() []ima.Entry { return a }}, {quoted: true, extend: func() []ima.Entry { return b }, miscount: -1}}
		}, state: store.Trusted, ids: []string{"warning:" + failure.IMACountClaim}, count: 3},
		{name: "empty delta", steps: func() []step {
			return []step{{quoted: true, extend: func() []ima.Entry { return nil }}}
		}, state: store.Trusted},
		{name: "quoted delta, bad template hash", steps: func() []step {
			es := []ima.Entry{r.entry(), r.entry()}
			return []step{{quoted: true, extend: func() []ima.Entry { return es }, send: func() []ima.Entry { return badHash(es, 1) }}}
		}, state: store.Trusted, ids: []string{"rejected:" + failure.IMAParsingError}},
		{name: "quoted delta, an entry the PCR does not hold", steps: func() []step {
			es := []ima.Entry{r.entry(), r.entry()}
			return []step{{quoted: true, extend: func() []ima.Entry { return es[:1] }, send: func() []ima.Entry { return es }}}
		}, state: store.Untrusted, ids: []string{"failure:" + failure.IMAPCRMismatch}},
		{name: "quoted delta, an entry missing", steps: func() []step {
			es := []ima.Entry{r.entry(), r.entry()}
			return []step{{quoted: true, extend: func() []ima.Entry { return es }, send: func() []ima.Entry { return es[:1] }}}
		}, state: store.Untrusted, ids: []string{"failure:" + failure.IMAPCRMismatch}},
		{name: "empty delta, PCR 10 moved", steps: func() []step {
			es := []ima.Entry{r.entry()}
			return []step{{quoted: true, extend: func() []ima.Entry { return es }, send: func() []ima.Entry { return nil }}}
		}, state: store.Untrusted, ids: []string{"failure:" + failure.IMAPCRMismatch}},
		{name: "delta, PCR 10 did not move", steps: func() []step {
			es := []ima.Entry{r.entry()}
			return []step{{quoted: true, extend: func() []ima.Entry { return nil }, send: func() []ima.Entry { return es }}}
		}, state: store.Untrusted, ids: []string{"failure:" + failure.IMAPCRMismatch}},
		{name: "an entry for another PCR inside the delta", steps: func() []step {
			es := []ima.Entry{r.entry(), r.other(), r.entry()}
			return []step{{quoted: true, extend: func() []ima.Entry { return es }}}
		}, state: store.Trusted, count: 3},
		{name: "an entry for another PCR ends the delta", steps: func() []step {
			es := []ima.Entry{r.entry(), r.other()}
			return []step{{quoted: true, extend: func() []ima.Entry { return es }}}
		}, state: store.Untrusted, ids: []string{"failure:" + failure.IMAPCRMismatch}},
		{name: "only entries for another PCR", steps: func() []step {
			es := []ima.Entry{r.other()}
			return []step{{quoted: true, extend: func() []ima.Entry { return es }}}
		}, state: store.Untrusted, ids: []string{"failure:" + failure.IMAPCRMismatch}},
		{name: "two chunks and a quote", steps: func() []step {
			a, b, c := []ima.Entry{r.entry(), r.entry()}, []ima.Entry{r.entry(), r.entry(), r.entry()}, []ima.Entry{r.entry()}
			return []step{
				{extend: func() []ima.Entry { return a }},
				{extend: func() []ima.Entry { return b }},
				{quoted: true, extend: func() []ima.Entry { return c }},
			}
		}, state: store.Trusted, count: 6},
		{name: "chunk held", steps: func() []step {
			a, b := []ima.Entry{r.entry(), r.entry()}, []ima.Entry{r.entry()}
			return []step{{extend: func() []ima.Entry { return a }}, {extend: func() []ima.Entry { return b }}}
		}, state: store.Trusted, pending: true},
		{name: "chunk, bad template hash", steps: func() []step {
			a, b := []ima.Entry{r.entry(), r.entry()}, []ima.Entry{r.entry(), r.entry()}
			return []step{{extend: func() []ima.Entry { return a }}, {extend: func() []ima.Entry { return b }, send: func() []ima.Entry { return badHash(b, 0) }}}
		}, state: store.Trusted, ids: []string{"rejected:" + failure.IMAParsingError}},
		{name: "chunk that does not continue the held ones", steps: func() []step {
			a, b := []ima.Entry{r.entry(), r.entry()}, []ima.Entry{r.entry()}
			return []step{{extend: func() []ima.Entry { return a }}, {extend: func() []ima.Entry { return b }, start: 1}}
		}, state: store.Trusted, ids: []string{"rejected:" + failure.EvidenceSeqGap}},
		{name: "quote that does not continue the held chunks", steps: func() []step {
			a, b := []ima.Entry{r.entry(), r.entry()}, []ima.Entry{r.entry()}
			return []step{{extend: func() []ima.Entry { return a }}, {quoted: true, extend: func() []ima.Entry { return b }, start: 3}}
		}, state: store.Trusted, ids: []string{"rejected:" + failure.EvidenceSeqGap}},
		{name: "held chunk altered in the device record", steps: func() []step {
			a, b := []ima.Entry{r.entry(), r.entry()}, []ima.Entry{r.entry()}
			return []step{{extend: func() []ima.Entry { return a }}, {quoted: true, extend: func() []ima.Entry { return b }, tamperHeld: true}}
		}, state: store.Untrusted, ids: []string{"failure:" + failure.IMAPCRMismatch}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := r.device()
			before := d.IMACount
			var out Outcome
			steps := tc.steps()
			for i, s := range steps {
				ext := s.extend()
				r.extend(ext)
				send := ext
				if s.send != nil {
					send = s.send()
				}
				start := d.IMACount + uint64(countEntries(d.PendingIMA))
				if len(d.PendingIMA) > 0 {
					start = d.PendingStart + uint64(countEntries(d.PendingIMA))
				}
				start += uint64(s.start)
				if s.tamperHeld {
					d.PendingIMA = append([]byte(nil), d.PendingIMA...)
					d.PendingIMA[4] ^= 1 // the first held entry's template hash
				}
				var m *protocol.Evidence
				if s.quoted {
					r.miscount = s.miscount
					m = r.quoted(d, d.NextSeq, start, ima.MarshalBinary(send))
					r.miscount = 0
				} else {
					m = &protocol.Evidence{Seq: d.NextSeq, IMAStart: start, IMA: ima.MarshalBinary(send)}
				}
				out = r.judge(d, m)
				if i < len(steps)-1 {
					if ids := failureIDs(out); len(ids) > 0 || out.Device == nil {
						t.Fatalf("step %d: %v", i, ids)
					}
					d = out.Device
				}
			}
			if got := fmt.Sprint(failureIDs(out)); got != fmt.Sprint(tc.ids) {
				t.Fatalf("events %s, want %v (%+v)", got, tc.ids, out.Events)
			}
			if out.Device == nil {
				t.Fatal("no device record to save")
			}
			if out.Device.State != tc.state {
				t.Fatalf("state %s, want %s", out.Device.State, tc.state)
			}
			if tc.state == store.Trusted {
				if got := int(out.Device.IMACount - before); got != tc.count {
					t.Fatalf("verified %d entries, want %d", got, tc.count)
				}
				if (len(out.Device.PendingIMA) > 0) != tc.pending {
					t.Fatalf("held %d bytes, want held: %v", len(out.Device.PendingIMA), tc.pending)
				}
			}
			// The next case starts from a device in good standing at the
			// simulator's PCR 10 (r.device).
		})
	}
}

// TestCountEntries checks the length-field count against the parser's.
func TestCountEntries(t *testing.T) {
	var es []ima.Entry
	for i := 0; i < 5; i++ {
		h := sha256.Sum256([]byte{byte(i)})
		e, err := ima.NewNgEntry(10, "sha256", h[:], fmt.Sprintf("/p/%d", i))
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
	}
	for n := 0; n <= len(es); n++ {
		b := ima.MarshalBinary(es[:n])
		if got := countEntries(b); got != n {
			t.Fatalf("%d entries counted as %d", n, got)
		}
		if n > 0 {
			if got := countEntries(b[:len(b)-1]); got != n-1 {
				t.Fatalf("%d entries, truncated, counted as %d", n, got)
			}
		}
	}
}

// TestIssueNonce: a keyed nonce is accepted while it is one of the newest
// NonceWindow issued to its device, and never for another device, under
// another hub key, altered, or before it is issued; a device record no
// longer grows with its window. A window stored by an older hub is still
// accepted until it leaves the window.
func TestIssueNonce(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	for _, window := range []int{1, 3, 64} {
		t.Run(fmt.Sprint(window), func(t *testing.T) {
			v := New(Config{NonceWindow: window, NonceKey: key})
			d := &store.Device{Key: "default/d"}
			var issued [][]byte
			for i := 0; i < 2*window+1; i++ {
				issued = append(issued, v.issueNonce(d))
				if !bytes.Equal(v.currentNonce(d), issued[i]) {
					t.Fatalf("issue %d: current nonce is not the one just issued", i)
				}
			}
			if len(d.Nonces) != 0 {
				t.Fatalf("the record holds %d nonces", len(d.Nonces))
			}
			for i, n := range issued {
				idx, ok := v.findNonce(d, n)
				if want := i >= len(issued)-window; ok != want || ok && idx != uint64(i+1) {
					t.Errorf("nonce %d: found %v (idx %d), want %v", i+1, ok, idx, want)
				}
			}
			last := issued[len(issued)-1]
			other := &store.Device{Key: "default/e", NonceNext: d.NonceNext}
			flipped := bytes.Clone(last)
			flipped[31] ^= 1
			renumbered := bytes.Clone(last)
			renumbered[7] ^= 1
			for _, tc := range []struct {
				name string
				v    *Verifier
				d    *store.Device
				n    []byte
			}{
				{"another device's", v, other, last},
				{"under another hub key", New(Config{NonceWindow: window}), d, last},
				{"MAC altered", v, d, flipped},
				{"number altered", v, d, renumbered},
				{"not issued yet", v, d, v.nonceAt(d, d.NonceNext+1)},
				{"truncated", v, d, last[:31]},
			} {
				if _, ok := tc.v.findNonce(tc.d, tc.n); ok {
					t.Errorf("%s nonce accepted", tc.name)
				}
			}
		})
	}
	t.Run("a new chain", func(t *testing.T) {
		// The same device id enrolled again (a new chain, its record made
		// anew): none of its earlier nonces is issued again.
		v := New(Config{NonceKey: key})
		first := &store.Device{Key: "default/d", EnrolledAt: time.Unix(1_800_000_000, 0)}
		seen := map[string]bool{}
		for i := 0; i < 5; i++ {
			seen[string(v.issueNonce(first))] = true
		}
		again := &store.Device{Key: "default/d", EnrolledAt: first.EnrolledAt.Add(time.Hour)}
		for i := 0; i < 5; i++ {
			if seen[string(v.issueNonce(again))] {
				t.Fatalf("nonce %d of the new chain was issued to the earlier one", i+1)
			}
		}
	})
	t.Run("stored window", func(t *testing.T) {
		v := New(Config{NonceWindow: 4, NonceKey: key})
		old, older := bytes.Repeat([]byte{9}, 32), bytes.Repeat([]byte{8}, 32)
		d := &store.Device{Key: "default/d", NonceNext: 10, Nonces: store.NonceWindow{{Idx: 7, Value: older}, {Idx: 10, Value: old}}}
		if idx, ok := v.findNonce(d, old); !ok || idx != 10 {
			t.Fatalf("a stored nonce: found %v idx %d", ok, idx)
		}
		if !bytes.Equal(v.currentNonce(d), old) {
			t.Fatal("current nonce is not the stored newest")
		}
		for i := 0; i < 3; i++ {
			v.issueNonce(d)
		}
		if _, ok := v.findNonce(d, old); !ok || len(d.Nonces) == 0 {
			t.Fatal("a stored nonce still in the window was dropped")
		}
		if _, ok := v.findNonce(d, older); ok {
			t.Fatal("a stored nonce that left the window is still accepted")
		}
		v.issueNonce(d)
		if _, ok := v.findNonce(d, old); ok || len(d.Nonces) != 0 {
			t.Fatal("a stored nonce out of the window is still accepted")
		}
	})
}

// TestEnrollRepeated: an enrollment request repeated while its challenge
// is open (the agent retries while its TPM is still activating, or the
// broker redelivers) is answered with the same challenge, so the answer to
// the first still enrolls the device; a different request, or one after
// the challenge expired, gets a new challenge and the old answer fails.
func TestEnrollRepeated(t *testing.T) {
	tp, ek, ak := simTPM(t)
	defer tp.Close()
	now := time.Unix(1_800_000_000, 0)
	v := New(Config{AllowTOFUUnsafe: true, Now: func() time.Time { return now }})
	req := func(release string) *protocol.Enroll {
		return &protocol.Enroll{V: protocol.Version, Group: "g", EKPublic: ek.PublicArea, AKPublic: ak.PublicArea, Release: release}
	}
	challenge := func(m *protocol.Enroll) *protocol.Challenge {
		t.Helper()
		o := v.Enroll(nil, "default", "d", m)
		c, ok := o.Reply.(*protocol.Challenge)
		if !ok {
			t.Fatalf("Enroll replied %s %+v, want a challenge", o.ReplyKind, o.Reply)
		}
		return c
	}
	answer := func(c *protocol.Challenge) bool {
		t.Helper()
		secret, err := ek.ActivateCredential(ak, c.IDObject, c.EncSecret)
		if err != nil {
			t.Fatal(err)
		}
		o := v.Activate(nil, "default", "d", &protocol.Activate{V: protocol.Version, Secret: secret})
		return o.Reply.(*protocol.Enrolled).OK
	}
	t.Run("a new chain keeps the numbers", func(t *testing.T) {
		// The device enrolled before with another AK: sequence and nonce
		// numbers continue.
		c := challenge(req("r1"))
		secret, err := ek.ActivateCredential(ak, c.IDObject, c.EncSecret)
		if err != nil {
			t.Fatal(err)
		}
		old := &store.Device{Key: "default/d", ID: "d", Fleet: "default", EKPublic: ek.PublicArea, AKPublic: []byte("an earlier AK"), NextSeq: 17, NonceNext: 40}
		o := v.Activate(old, "default", "d", &protocol.Activate{V: protocol.Version, Secret: secret})
		if !o.Reply.(*protocol.Enrolled).OK || o.Device == nil {
			t.Fatalf("re-enrollment refused: %+v", o.Reply)
		}
		if o.Device.NextSeq != 17 || o.Device.NonceNext != 41 {
			t.Fatalf("new chain at seq %d, nonce %d; want 17 and 41", o.Device.NextSeq, o.Device.NonceNext)
		}
	})
	for _, tc := range []struct {
		name      string
		second    func() *protocol.Challenge
		same, oks bool // same challenge; the first challenge's answer enrolls
	}{
		{"repeated request", func() *protocol.Challenge { return challenge(req("r1")) }, true, true},
		{"different request", func() *protocol.Challenge { return challenge(req("r2")) }, false, false},
		{"repeated after expiry", func() *protocol.Challenge { now = now.Add(3 * time.Minute); return challenge(req("r1")) }, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first := challenge(req("r1"))
			second := tc.second()
			if got := bytes.Equal(first.IDObject, second.IDObject) && bytes.Equal(first.EncSecret, second.EncSecret); got != tc.same {
				t.Fatalf("second challenge equal to the first: %v, want %v", got, tc.same)
			}
			if got := answer(first); got != tc.oks {
				t.Fatalf("answer to the first challenge enrolled: %v, want %v", got, tc.oks)
			}
			if !tc.oks {
				// The open challenge was consumed by the failed answer.
				if answer(second) {
					t.Fatal("a second answer enrolled: one answer per challenge")
				}
			}
		})
	}
}
