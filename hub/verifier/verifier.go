package verifier

import (
	"bytes"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ratatouille/rat/evidence/claims"
	"github.com/ratatouille/rat/evidence/credential"
	"github.com/ratatouille/rat/evidence/ekcert"
	"github.com/ratatouille/rat/evidence/eventlog"
	"github.com/ratatouille/rat/evidence/failure"
	"github.com/ratatouille/rat/evidence/ima"
	"github.com/ratatouille/rat/evidence/protocol"
	"github.com/ratatouille/rat/evidence/quote"
	"github.com/ratatouille/rat/evidence/runtimepolicy"
	"github.com/ratatouille/rat/hub/store"
)

// PolicySource returns the runtime policy that judges a group's devices.
type PolicySource func(group string) (*runtimepolicy.Policy, string, error)

// Config configures a Verifier.
type Config struct {
	// EKRoots are the TPM manufacturers' roots an EK certificate must chain
	// to; EKIntermediates optional intermediates.
	EKRoots, EKIntermediates *x509.CertPool
	// AllowTOFUUnsafe enrolls devices whose EK has no certificate that
	// chains to EKRoots, trusting the EK on first use. Credential
	// activation then proves only that the AK lives with that EK, not that
	// the EK is a genuine TPM's. Off by default; recorded per device.
	AllowTOFUUnsafe bool
	// PCRs that every quote must cover in the sha256 bank (default 0–10).
	PCRs     []int
	Policies PolicySource
	// Releases, when set, judges the devices of a group that has OTA
	// releases by the policy of the release they report (release.go).
	Releases ReleaseSource
	Now      func() time.Time
	// NonceWindow is how many of the newest nonces issued to a device it
	// may still use (default 64): records queued while offline use older
	// ones.
	NonceWindow int
	// NonceKey is the hub's secret for its nonces (at least 32 bytes; see
	// nonceAt). Every hub that serves a store must use the store's key, or
	// the nonces outstanding when it starts are refused as stale (the
	// devices then resynchronise); hub/server keeps it in the store.
	// Shorter or empty: a random key for this Verifier only.
	NonceKey []byte
	// MaxPendingIMA bounds IMA bytes held between chunks (default 64 MiB).
	MaxPendingIMA int
	// Bind, if set, signs the statement that an enrolled AK was bound to
	// its EK by credential activation (kept in the device record and
	// exported in bundles).
	Bind func(device string, ak, ek []byte, t time.Time) ([]byte, error)
}

// Verifier judges messages. It keeps only pending enrollment challenges in
// memory (their secrets are never stored); everything else is in the
// device record.
type Verifier struct {
	cfg     Config
	mu      sync.Mutex
	pending map[string]*challenge
	// aks caches AK public areas decoded to keys: go-tpm's reflective
	// TPMT_PUBLIC decoder was a tenth of the hub's CPU per quote. Keyed by
	// the exact bytes, so a cached key is the one those bytes encode.
	aks sync.Map // string(TPMT_PUBLIC) -> crypto.PublicKey
	nAK atomic.Int64
	// required is the quote option for cfg.PCRs, made once.
	required quote.Option
	// macs holds HMAC-SHA256 states keyed with cfg.NonceKey: a Reset
	// state restores the keyed pads, where hmac.New hashes the key into
	// them again (two of the four SHA-256 blocks of a nonce, and its
	// allocations, twice per quoted record).
	macs sync.Pool
}

// maxCachedAKs bounds the AK cache (one entry per active device).
const maxCachedAKs = 1 << 18

func (v *Verifier) akKey(public []byte) (crypto.PublicKey, error) {
	if k, ok := v.aks.Load(string(public)); ok {
		return k, nil
	}
	k, err := credential.PublicKey(public)
	if err != nil {
		return nil, err
	}
	if v.nAK.Add(1) > maxCachedAKs {
		v.aks.Clear()
		v.nAK.Store(1)
	}
	v.aks.Store(string(public), k)
	return k, nil
}

type challenge struct {
	c       *credential.Challenge
	enroll  protocol.Enroll
	ekOK    bool
	issuer  string
	expires time.Time
}

// New returns a Verifier.
func New(cfg Config) *Verifier {
	if len(cfg.PCRs) == 0 {
		cfg.PCRs = []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NonceWindow <= 0 {
		cfg.NonceWindow = 64
	}
	if cfg.MaxPendingIMA <= 0 {
		cfg.MaxPendingIMA = 64 << 20
	}
	if len(cfg.NonceKey) < 32 {
		cfg.NonceKey = make([]byte, 32)
		if _, err := rand.Read(cfg.NonceKey); err != nil {
			panic("verifier: no randomness: " + err.Error())
		}
	}
	v := &Verifier{cfg: cfg, pending: map[string]*challenge{}, required: quote.WithRequiredPCRs(quote.AlgSHA256, cfg.PCRs...)}
	v.macs.New = func() any { return hmac.New(sha256.New, v.cfg.NonceKey) }
	return v
}

// Outcome is the result of one message.
type Outcome struct {
	// Device is the record to save (nil: nothing changed).
	Device *store.Device
	Events []store.Event
	// ReplyKind/Reply is the message to publish to the device.
	ReplyKind string
	Reply     any
	// Seq/Raw is the evidence record to store with the device.
	Seq uint64
	Raw []byte
	// Became is set when the device's state changed, to the new state.
	Became string
	// Baseline is a policy generated from this device's log for its group.
	Baseline *runtimepolicy.Policy
}

func (v *Verifier) ev(kind string, seq uint64, detail string, e *failure.Event) store.Event {
	return store.Event{Time: v.cfg.Now().UTC(), Kind: kind, Seq: seq, Detail: detail, Event: e}
}

// Key is a device's store key.
func Key(fleet, id string) string { return fleet + "/" + id }

// Enroll handles an enrollment request: it checks the EK certificate and the
// AK's attributes and answers with a credential-activation challenge.
func (v *Verifier) Enroll(d *store.Device, fleet, id string, m *protocol.Enroll) Outcome {
	key := Key(fleet, id)
	refuse := func(id, why string) Outcome {
		e := failure.Event{ID: id, Severity: failure.Critical, Context: why}
		return Outcome{ReplyKind: protocol.KindEnrolled, Reply: &protocol.Enrolled{OK: false, Reason: e.String()},
			Events: []store.Event{v.ev("rejected", 0, "enrollment refused", &e)}, Device: nil}
	}
	if d != nil && d.State == store.Decommissioned {
		return refuse(failure.CredentialActivation, "device is decommissioned")
	}
	if err := protocol.ValidID(m.Group); err != nil {
		return refuse(failure.EvidenceMalformed, "group: "+err.Error())
	}
	if err := credential.CheckAKPublic(m.AKPublic); err != nil {
		return refuse(failure.CredentialActivation, err.Error())
	}
	ekPub, err := credential.PublicKey(m.EKPublic)
	if err != nil {
		return refuse(failure.EKCertInvalid, err.Error())
	}
	if d != nil && !bytes.Equal(d.EKPublic, m.EKPublic) {
		return refuse(failure.EKCertInvalid, "device id is enrolled with another EK")
	}
	ekOK, issuer := false, ""
	var certErrs []error
	if v.cfg.EKRoots != nil {
		for _, der := range m.EKCerts {
			c, err := ekcert.Verify(der, ekPub, v.cfg.EKRoots, v.cfg.EKIntermediates, v.cfg.Now())
			if err == nil {
				ekOK, issuer = true, c.Issuer.String()
				break
			}
			certErrs = append(certErrs, err)
		}
	}
	if !ekOK && !v.cfg.AllowTOFUUnsafe {
		why := "no EK certificate chains to a configured manufacturer root"
		if len(certErrs) > 0 {
			why += ": " + errors.Join(certErrs...).Error()
		}
		return refuse(failure.EKCertInvalid, why)
	}
	// A repeated request (the agent asks again while its TPM is still
	// activating the first challenge, or the broker redelivers it) gets
	// the open challenge again: a new one would replace the challenge the
	// agent is answering, and its answer would fail. The expiry stays, so
	// repeating the request cannot keep a challenge open.
	v.mu.Lock()
	if p := v.pending[key]; p != nil && v.cfg.Now().Before(p.expires) && sameEnroll(&p.enroll, m) {
		v.mu.Unlock()
		return Outcome{ReplyKind: protocol.KindChallenge, Reply: &protocol.Challenge{IDObject: p.c.IDObject, EncSecret: p.c.EncSecret}}
	}
	v.mu.Unlock()
	c, err := credential.Make(m.EKPublic, m.AKPublic)
	if err != nil {
		return refuse(failure.CredentialActivation, err.Error())
	}
	v.mu.Lock()
	v.pending[key] = &challenge{c: c, enroll: *m, ekOK: ekOK, issuer: issuer, expires: v.cfg.Now().Add(2 * time.Minute)}
	v.mu.Unlock()
	return Outcome{ReplyKind: protocol.KindChallenge, Reply: &protocol.Challenge{IDObject: c.IDObject, EncSecret: c.EncSecret}}
}

// sameEnroll reports whether two enrollment requests ask for the same
// thing (so one challenge answers both).
func sameEnroll(a, b *protocol.Enroll) bool {
	ab, err1 := protocol.Marshal(a)
	bb, err2 := protocol.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ab, bb)
}

// Activate checks the answer to the challenge and, on success, records the
// device (or, for a device re-enrolling the same AK, continues its record).
func (v *Verifier) Activate(d *store.Device, fleet, id string, m *protocol.Activate) Outcome {
	key := Key(fleet, id)
	v.mu.Lock()
	p := v.pending[key]
	delete(v.pending, key) // one answer per challenge
	v.mu.Unlock()
	fail := func(why string) Outcome {
		e := failure.Event{ID: failure.CredentialActivation, Severity: failure.Critical, Context: why}
		return Outcome{ReplyKind: protocol.KindEnrolled, Reply: &protocol.Enrolled{OK: false, Reason: e.String()},
			Events: []store.Event{v.ev("rejected", 0, "activation failed", &e)}}
	}
	if p == nil || v.cfg.Now().After(p.expires) {
		return fail("no open challenge for this device")
	}
	if err := p.c.Check(m.Secret); err != nil {
		return fail(err.Error())
	}
	now := v.cfg.Now().UTC()
	nd := d
	if nd == nil || !bytes.Equal(nd.AKPublic, p.enroll.AKPublic) {
		// A new device, or a new AK for this EK: a new chain.
		nd = &store.Device{Key: key, ID: id, Fleet: fleet, NextSeq: 1, EnrolledAt: now}
		if d != nil {
			nd.NextSeq = d.NextSeq // never reuse sequence numbers
			if nd.NextSeq == 0 {
				nd.NextSeq = 1
			}
			nd.NonceNext = d.NonceNext // nor nonce numbers (nonceAt)
		}
		nd.State = store.Enrolling
	} else {
		cp := *d
		nd = &cp
	}
	nd.Group = p.enroll.Group
	nd.EKPublic, nd.EKCerts, nd.AKPublic = p.enroll.EKPublic, p.enroll.EKCerts, p.enroll.AKPublic
	nd.EKVerified, nd.EKIssuer, nd.TOFU = p.ekOK, p.issuer, !p.ekOK
	nd.Baseline = p.enroll.Baseline
	nd.Release = p.enroll.Release
	nd.LastSeen = now
	if v.cfg.Bind != nil {
		b, err := v.cfg.Bind(id, nd.AKPublic, nd.EKPublic, now)
		if err != nil {
			return fail("signing the AK binding: " + err.Error())
		}
		nd.Binding = b
	}
	nonce := v.issueNonce(nd)
	detail := "enrolled (EK certificate verified: " + p.issuer + ")"
	if nd.TOFU {
		detail = "enrolled trusting the EK on first use (no EK certificate verified; AllowTOFUUnsafe)"
	}
	return Outcome{
		Device: nd, Events: []store.Event{v.ev("enrolled", 0, detail, nil)},
		ReplyKind: protocol.KindEnrolled,
		Reply: &protocol.Enrolled{OK: true, Nonce: nonce, NextSeq: nd.NextSeq, QuotePrev: nd.QuotePrev,
			IMACount: nd.IMACount, BootID: nd.BootID},
	}
}

// Nonces are keyed, not stored. Nonce number idx of device key, enrolled
// (its chain begun) at enrolledAt, is
//
//	idx (8 bytes, big endian) || HMAC-SHA256(NonceKey, label || key || 0 || enrolledAt || idx)[:24]
//
// with enrolledAt in Unix nanoseconds. The enrollment time keeps a device
// that enrolls again (a new chain, perhaps a new AK) from being given a
// nonce of its earlier chain, for which it could have kept a quote; the
// numbers also continue across a new chain (Activate).
//
// The hub checks a nonce by computing it again, so a device record holds
// only the number of the newest nonce issued (NonceNext) and of the nonce
// its last accepted quote used (NonceUsed), not a window of 64 random
// values (≈ 2.5 KB of every device record, rewritten with every record,
// and of the hub's device cache). Without the key a device cannot make a
// nonce the hub has not issued yet, which is what freshness needs; 192
// bits of MAC leave nothing to guess. Records stored by hubs before keyed
// nonces hold their window (d.Nonces), still accepted until it leaves the
// window.
const nonceLabel = "ratatouille hub nonce v1\x00"

// nonceAt is nonce number idx of device d.
func (v *Verifier) nonceAt(d *store.Device, idx uint64) []byte {
	m := v.macs.Get().(hash.Hash)
	defer v.macs.Put(m)
	m.Reset()
	m.Write([]byte(nonceLabel))
	m.Write([]byte(d.Key))
	var b [17]byte
	binary.BigEndian.PutUint64(b[1:], uint64(d.EnrolledAt.UnixNano()))
	binary.BigEndian.PutUint64(b[9:], idx)
	m.Write(b[:])
	out := make([]byte, 8, 8+sha256.Size)
	binary.BigEndian.PutUint64(out, idx)
	return m.Sum(out)[:32]
}

// issueNonce issues the device's next nonce.
func (v *Verifier) issueNonce(d *store.Device) []byte {
	d.NonceNext++
	if n := len(d.Nonces); n > 0 && d.Nonces[n-1].Idx+uint64(v.cfg.NonceWindow) <= d.NonceNext {
		d.Nonces = nil // the stored window has left the window
	}
	return v.nonceAt(d, d.NonceNext)
}

// currentNonce is the newest nonce issued to d (for a repeated ack).
func (v *Verifier) currentNonce(d *store.Device) []byte {
	if n := len(d.Nonces); n > 0 && d.Nonces[n-1].Idx == d.NonceNext {
		return d.Nonces[n-1].Value
	}
	if d.NonceNext == 0 {
		return nil
	}
	return v.nonceAt(d, d.NonceNext)
}

// findNonce returns the number of nonce n if it is one of the last
// NonceWindow nonces issued to d.
func (v *Verifier) findNonce(d *store.Device, n []byte) (uint64, bool) {
	if len(n) == 32 {
		idx := binary.BigEndian.Uint64(n[:8])
		if idx >= 1 && idx <= d.NonceNext && d.NonceNext-idx < uint64(v.cfg.NonceWindow) && hmac.Equal(v.nonceAt(d, idx), n) {
			return idx, true
		}
	}
	ns := d.Nonces
	for i := len(ns) - 1; i >= 0; i-- {
		if len(ns[i].Value) == len(n) && subtle.ConstantTimeCompare(ns[i].Value, n) == 1 {
			return ns[i].Idx, d.NonceNext-ns[i].Idx < uint64(v.cfg.NonceWindow)
		}
	}
	return 0, false
}

// Evidence judges one evidence record.
func (v *Verifier) Evidence(d *store.Device, raw []byte, m *protocol.Evidence, stored func(seq uint64) ([]byte, error)) Outcome {
	now := v.cfg.Now().UTC()
	nd := *d
	nd.LastSeen = now
	ack := &protocol.Ack{Seq: m.Seq}
	out := Outcome{ReplyKind: protocol.KindAck, Reply: ack}

	// reject refuses the record without believing any of it: the chain
	// does not move, and the device is told where the hub stands.
	reject := func(id, why string) Outcome {
		e := failure.Event{ID: id, Severity: failure.Critical, Context: why}
		ack.Rejected, ack.Reason = true, e.String()
		ack.Resync, ack.NextSeq, ack.QuotePrev, ack.IMAOffset = true, nd.NextSeq, nd.QuotePrev, nd.IMACount
		ack.Nonce = v.issueNonce(&nd)
		ack.State = nd.State
		nd.PendingIMA, nd.PendingStart = nil, 0
		out.Device = &nd
		out.Events = append(out.Events, v.ev("rejected", m.Seq, "evidence record refused", &e))
		return out
	}
	if d.State == store.Decommissioned {
		ack.Rejected, ack.Reason = true, "device is decommissioned"
		return out
	}

	// 1. Order: exactly the next record, or a duplicate of one already
	// processed (a republish after a reconnect), or a replay.
	if m.Seq < d.NextSeq {
		prev, err := stored(m.Seq)
		if err == nil && bytes.Equal(prev, raw) {
			ack.State = d.State
			ack.Nonce = v.currentNonce(d)
			return Outcome{ReplyKind: protocol.KindAck, Reply: ack} // duplicate: ack again, change nothing
		}
		return reject(failure.EvidenceReplay, fmt.Sprintf("record %d is older than the next expected %d and differs from the one received", m.Seq, d.NextSeq))
	}
	want := d.NextSeq
	if m.Quoted() {
		want += m.Thinned
	} else if m.Thinned != 0 {
		return reject(failure.EvidenceMalformed, "an IMA-only record cannot stand for thinned records")
	}
	if m.Seq != want {
		return reject(failure.EvidenceSeqGap, fmt.Sprintf("record %d, expected %d (thinned %d): records are missing", m.Seq, want, m.Thinned))
	}

	// IMA bytes must parse and each entry's template hash must be right
	// before they are held.
	var delta []ima.Entry
	if len(m.IMA) > 0 {
		es, err := ima.ParseBinary(bytes.NewReader(m.IMA))
		if err != nil {
			return reject(failure.IMAParsingError, err.Error())
		}
		if err := ima.VerifyTemplateHashes(es, int(m.IMAStart)); err != nil {
			return reject(failure.IMAParsingError, err.Error())
		}
		delta = es
	}

	if !m.Quoted() {
		// A chunk of a large delta: hold it until the quote that covers it.
		if len(nd.PendingIMA) == 0 {
			nd.PendingStart = m.IMAStart
		} else if m.IMAStart != nd.PendingStart+uint64(countEntries(nd.PendingIMA)) {
			return reject(failure.EvidenceSeqGap, fmt.Sprintf("IMA chunk starts at entry %d, expected %d", m.IMAStart, nd.PendingStart+uint64(countEntries(nd.PendingIMA))))
		}
		if len(nd.PendingIMA)+len(m.IMA) > v.cfg.MaxPendingIMA {
			return reject(failure.EvidenceOversize, "IMA delta larger than the hub's bound")
		}
		nd.PendingIMA = append(append([]byte(nil), nd.PendingIMA...), m.IMA...)
		nd.NextSeq = m.Seq + 1
		ack.State = nd.State
		out.Device, out.Seq, out.Raw = &nd, m.Seq, raw
		return out
	}

	// 2. Claims: canonical, for this record, this device, this chain.
	c, err := claims.Unmarshal(m.Claims)
	if err != nil {
		return reject(failure.EvidenceMalformed, err.Error())
	}
	if c.Seq != m.Seq {
		return reject(failure.EvidenceMalformed, fmt.Sprintf("claims seq %d in record %d", c.Seq, m.Seq))
	}
	if !bytes.Equal(c.UEID, claims.UEID(d.EKPublic)) {
		return reject(failure.EvidenceMalformed, "claims ueid is not this device's")
	}
	if !bytes.Equal(c.Prev, d.QuotePrev) {
		return reject(failure.EvidenceChainBroken, fmt.Sprintf("record %d does not chain to the last accepted quote", m.Seq))
	}
	// 3. Freshness: a nonce this hub issued to this device, not older than
	// the one the last accepted quote used.
	if c.SelfIssued {
		return reject(failure.EvidenceStaleNonce, "self-issued nonce on a live connection (ingest offline bundles instead)")
	}
	idx, ok := v.findNonce(d, c.Nonce)
	if !ok {
		return reject(failure.EvidenceStaleNonce, "nonce was not issued to this device (or is too old)")
	}
	if idx < d.NonceUsed {
		return reject(failure.EvidenceStaleNonce, fmt.Sprintf("nonce %d is older than the nonce %d of the last accepted quote", idx, d.NonceUsed))
	}

	// 4. The quote: signature, qualifying data = H(claims), PCR digest,
	// clock monotonicity.
	ak, err := v.akKey(d.AKPublic)
	if err != nil {
		return reject(failure.QuoteMalformed, err.Error())
	}
	opts := []quote.Option{quote.WithNonce(claims.QualifyingData(m.Claims)), v.required}
	if d.HaveClock {
		opts = append(opts, quote.WithPrevious(d.Clock))
	}
	res, err := quote.Verify(ak, m.Attest, m.Signature, quote.PCRValues(m.PCRs), opts...)
	if err != nil {
		var fe *failure.Error
		id := failure.QuoteMalformed
		if errors.As(err, &fe) {
			id = fe.Event.ID
		}
		if id == failure.QuoteInvalidSignature || id == failure.QuotePCRDigest || id == failure.QuoteClockBackwards {
			// The device's own AK evidence does not hold: fail closed.
			return v.untrusted(&nd, m, raw, ack, out, []failure.Event{{ID: id, Severity: failure.Critical, Context: err.Error()}}, false, false)
		}
		return reject(id, err.Error())
	}
	// From here on the claims are the TPM's word.
	nd.NonceUsed = idx
	nd.Clock, nd.HaveClock = res.Attest.ClockInfo, true
	nd.Quotes++
	pcrs := m.PCRs[quote.AlgSHA256]

	var events []failure.Event
	newBoot := c.BootID != d.BootID
	if newBoot && d.BootID != "" && !res.Rebooted {
		events = append(events, failure.Event{ID: failure.QuoteReboot, Severity: failure.Warning,
			Context: fmt.Sprintf("boot id changed (%s → %s) without a TPM reset", d.BootID, c.BootID)})
	}
	if !newBoot && res.Rebooted {
		events = append(events, failure.Event{ID: failure.QuoteReboot, Severity: failure.Critical,
			Context: "TPM reset without a new boot id: the measurement list no longer matches PCR 10"})
	}

	// Measured boot: the firmware event log, sent with the first record of
	// a boot, must replay to the quoted PCRs; PCR 7 gives Secure Boot.
	if newBoot {
		nd.EventLogVerified, nd.SecureBoot = false, nil
	}
	if len(m.EventLog) > 0 {
		evs, sb := checkEventLog(m.EventLog, pcrs)
		events = append(events, evs...)
		if !critical(evs) {
			nd.EventLogVerified, nd.SecureBoot = true, sb
		}
	}

	// 5. IMA: the delta (held chunks + this record) continues the stored
	// replay and replays exactly to the quoted PCR 10.
	start, value := d.IMACount, d.PCR10
	if newBoot {
		start, value = 0, nil
		nd.BootStartSeq = m.Seq
		if len(d.PendingIMA) > 0 && d.PendingStart != 0 {
			return reject(failure.EvidenceSeqGap, "new boot but the held IMA chunks do not start at entry 0")
		}
	}
	var all []ima.Entry
	firstStart := m.IMAStart
	if len(d.PendingIMA) > 0 {
		held, err := ima.ParseBinary(bytes.NewReader(d.PendingIMA))
		if err != nil {
			return reject(failure.IMAParsingError, "held chunks: "+err.Error())
		}
		all = append(held, delta...)
		firstStart = d.PendingStart
		if m.IMAStart != d.PendingStart+uint64(len(held)) {
			return reject(failure.EvidenceSeqGap, fmt.Sprintf("IMA delta starts at entry %d, expected %d", m.IMAStart, d.PendingStart+uint64(len(held))))
		}
	} else {
		all = delta
	}
	if len(all) > 0 && firstStart != start {
		return reject(failure.EvidenceSeqGap, fmt.Sprintf("IMA delta starts at entry %d; the hub has verified %d", firstStart, start))
	}
	r, err := ima.Resume(crypto.SHA256, value, int(start))
	if err != nil {
		return reject(failure.IMAParsingError, err.Error())
	}
	pcr10, err := advanceTo(r, value, all, len(all)-len(delta), pcrs[10])
	if err != nil || uint64(r.Count()) != start+uint64(len(all)) {
		why := fmt.Sprintf("the %d entries from %d do not replay to the quoted PCR 10 %x", len(all), start, pcrs[10])
		if err != nil {
			why = err.Error()
		}
		events = append(events, failure.Event{ID: failure.IMAPCRMismatch, Severity: failure.Critical, Context: why})
		if newBoot {
			nd.BootID, nd.IMACount, nd.PCR10 = c.BootID, 0, nil
		}
		return v.untrusted(&nd, m, raw, ack, out, events, true, false)
	}
	nd.BootID, nd.IMACount, nd.PCR10 = c.BootID, uint64(r.Count()), pcr10
	nd.PendingIMA, nd.PendingStart = nil, 0
	if c.IMACount != nd.IMACount {
		// rat-audit reports the same: the claim is the agent's count, the
		// replay to the quoted PCR 10 is what the TPM signed, and it holds.
		events = append(events, failure.Event{ID: failure.IMACountClaim, Severity: failure.Warning,
			Context: fmt.Sprintf("claims say %d IMA entries; the quoted PCR 10 covers %d", c.IMACount, nd.IMACount)})
	}
	nd.Release = c.Release
	nd.NextSeq = m.Seq + 1
	nd.QuotePrev = claims.QuoteDigest(m.Attest, m.Signature)
	nd.Thinned += m.Thinned
	nd.LastVerified = now

	// 6. Policy.
	var bootAgg []string
	if newBoot {
		vals := make([][]byte, 10)
		for i := range vals {
			vals[i] = pcrs[i]
		}
		if agg, err := ima.BootAggregate(vals, crypto.SHA256); err == nil {
			bootAgg = append(bootAgg, hex.EncodeToString(agg))
		}
	}
	p, digest, err := v.policyFor(d, &nd, newBoot, m.Seq, now, &out)
	var rerr *releaseError
	byRelease := errors.As(err, &rerr)
	if err != nil && !byRelease && d.Baseline && newBoot && start == 0 {
		// Baseline enrollment: this first full log becomes the group's
		// policy (seed doc 004); the hub stores it as Baseline::<group>.
		bp, gerr := runtimepolicy.FromEntries(all)
		if gerr == nil {
			if doc, merr := bp.Marshal(); merr == nil {
				out.Baseline = bp
				p = bp
				digest = PolicyDigest(doc)
				err = nil
			}
		}
	}
	if byRelease {
		events = append(events, rerr.e)
	} else if err != nil {
		events = append(events, failure.Event{ID: failure.RuntimePolicyMissing, Severity: failure.Critical, Context: "group " + d.Group + ": " + err.Error()})
	} else {
		nd.UsePolicy(digest, m.Seq, now)
		for _, e := range runtimepolicy.Evaluate(p, all, runtimepolicy.WithBootAggregates(bootAgg...)) {
			events = append(events, absolute(e, firstStart))
		}
	}
	if newBoot && len(all) > 0 && all[0].Path != "boot_aggregate" && start == 0 {
		events = append(events, failure.Event{ID: failure.IMABootAggregate, Severity: failure.Critical, Context: "the first entry of the boot is not boot_aggregate"})
	}
	if critical(events) {
		return v.untrusted(&nd, m, raw, ack, out, events, true, true)
	}
	for i := range events {
		out.Events = append(out.Events, v.ev("warning", m.Seq, "", &events[i]))
	}
	if nd.State == store.Enrolling || nd.State == store.Stale {
		out.Became = store.Trusted
		out.Events = append(out.Events, v.ev("state", m.Seq, fmt.Sprintf("%s → TRUSTED", nd.State), nil))
		nd.State, nd.Reason = store.Trusted, ""
	}
	ack.State = nd.State
	ack.Nonce = v.issueNonce(&nd)
	out.Device, out.Seq, out.Raw = &nd, m.Seq, raw
	return out
}

// untrusted records a bad record: the device becomes UNTRUSTED (and stays
// so until an operator or a new policy clears it). When the quote itself
// verified (quoteOK), the record joins the chain, so that later evidence
// still verifies and the auditor sees the failing record; otherwise the
// chain stays where it was and the device is asked to resync. A failed IMA
// replay also resyncs the device's IMA position to what the hub verified.
func (v *Verifier) untrusted(nd *store.Device, m *protocol.Evidence, raw []byte, ack *protocol.Ack, out Outcome, events []failure.Event, quoteOK, imaOK bool) Outcome {
	for i := range events {
		out.Events = append(out.Events, v.ev("failure", m.Seq, "", &events[i]))
	}
	nd.Failures = append(nd.Failures, events...)
	if len(nd.Failures) > 100 {
		nd.Failures = nd.Failures[len(nd.Failures)-100:]
	}
	if quoteOK {
		nd.NextSeq = m.Seq + 1
		nd.QuotePrev = claims.QuoteDigest(m.Attest, m.Signature)
		nd.LastVerified = v.cfg.Now().UTC()
		out.Seq, out.Raw = m.Seq, raw
	}
	if nd.State != store.Untrusted {
		why := events[0]
		for _, e := range events {
			if e.Severity == failure.Critical {
				why = e
				break
			}
		}
		out.Became = store.Untrusted
		out.Events = append(out.Events, v.ev("state", m.Seq, fmt.Sprintf("%s → UNTRUSTED: %s", nd.State, why.String()), nil))
		nd.State = store.Untrusted
		nd.Reason = why.String()
	}
	ack.State = nd.State
	if !quoteOK || !imaOK {
		nd.PendingIMA, nd.PendingStart = nil, 0
		ack.Resync, ack.NextSeq, ack.QuotePrev, ack.IMAOffset = true, nd.NextSeq, nd.QuotePrev, nd.IMACount
	}
	ack.Nonce = v.issueNonce(nd)
	out.Device = nd
	return out
}

func critical(events []failure.Event) bool {
	for _, e := range events {
		if e.Severity == failure.Critical {
			return true
		}
	}
	return false
}

// absolute renumbers an evaluation event from its index in the delta to
// its index in the boot's measurement list, which is what an operator can
// find in the device's log.
func absolute(e failure.Event, offset uint64) failure.Event {
	rel, ok := e.Fields["entry"]
	if !ok {
		return e
	}
	var i uint64
	if _, err := fmt.Sscanf(rel, "%d", &i); err != nil {
		return e
	}
	f := make(map[string]string, len(e.Fields))
	for k, v := range e.Fields {
		f[k] = v
	}
	f["entry"] = fmt.Sprint(offset + i)
	e.Fields = f
	e.Context = fmt.Sprintf("entry %d: %s", offset+i, strings.TrimPrefix(e.Context, "entry "+rel+": "))
	return e
}

// advanceTo replays all onto r, whose template hashes were verified at
// receipt except the first held ones (the held chunks, verified when they
// arrived and checked again here, as they come back from the device
// record). It replaced ima.Replayer.AdvanceTo, which verified every entry
// again (a second SHA-1 of each entry's template data per record) and
// compared the PCR after every entry (a copy of the value each). The
// outcome is AdvanceTo's followed by the caller's check that the whole
// delta was consumed: accepted only if the replay of all of it equals
// quoted and no shorter prefix does. A shorter prefix can equal the full
// replay only if the entries after it extend nothing (entries for another
// PCR: refused here when the last entry is one, as AdvanceTo's prefix
// match made the caller refuse it) or if SHA-256 extends cycle back to an
// earlier value, which the PCR's whole meaning already rules out. On
// success it returns the new PCR value (from is r's value before); on an
// error r is not to be used again (the caller records
// failure.IMAPCRMismatch).
func advanceTo(r *ima.Replayer, from []byte, all []ima.Entry, held int, quoted []byte) ([]byte, error) {
	if err := ima.VerifyTemplateHashes(all[:held], r.Count()); err != nil {
		return nil, err
	}
	if from == nil {
		from = make([]byte, sha256.Size)
	}
	if bytes.Equal(from, quoted) {
		if len(all) == 0 {
			return bytes.Clone(from), nil // from may be the stored device's
		}
		return nil, failure.New(failure.IMAPCRMismatch, "PCR 10 quoted %x is the value before entries %d..%d", quoted, r.Count(), r.Count()+len(all))
	}
	if len(all) == 0 {
		return nil, failure.New(failure.IMAPCRMismatch, "PCR 10 (%v) quoted %x: no new entries, and the verified value is %x", crypto.SHA256, quoted, from)
	}
	n := r.Count()
	if err := r.Advance(all); err != nil {
		return nil, err
	}
	if all[len(all)-1].PCR != 10 {
		return nil, failure.New(failure.IMAPCRMismatch, "entry %d, the last of the delta, is for PCR %d: the quoted PCR 10 covers no part of the delta after the entry before it", n+len(all)-1, all[len(all)-1].PCR)
	}
	v := r.Value()
	if !bytes.Equal(v, quoted) {
		return nil, failure.New(failure.IMAPCRMismatch, "PCR 10 (%v) quoted %x: entries %d..%d do not replay to it", crypto.SHA256, quoted, n, n+len(all))
	}
	return v, nil
}

// countEntries counts the entries of held IMA chunks by their length
// fields: every chunk parsed and had its template hashes checked when it
// was received, so parsing them all again for each new chunk (quadratic in
// the chunks of a large delta) only re-did that work.
func countEntries(b []byte) int {
	n := 0
	for len(b) >= 32 {
		nl := int(binary.LittleEndian.Uint32(b[24:28]))
		if nl > len(b)-32 {
			break
		}
		dl := int(binary.LittleEndian.Uint32(b[28+nl : 32+nl]))
		if dl > len(b)-32-nl {
			break
		}
		b = b[32+nl+dl:]
		n++
	}
	return n
}

// Reevaluate judges the current boot's entries (from the stored evidence)
// against p, for a policy change or an operator's clear. It returns the
// failures; none means the device may be TRUSTED again.
func Reevaluate(p *runtimepolicy.Policy, entries []ima.Entry, pcrs map[int][]byte) []failure.Event {
	var agg []string
	if len(pcrs) >= 10 {
		vals := make([][]byte, 10)
		for i := range vals {
			vals[i] = pcrs[i]
		}
		if a, err := ima.BootAggregate(vals, crypto.SHA256); err == nil {
			agg = append(agg, hex.EncodeToString(a))
		}
	}
	var out []failure.Event
	for _, e := range runtimepolicy.Evaluate(p, entries, runtimepolicy.WithBootAggregates(agg...)) {
		if e.Severity == failure.Critical {
			out = append(out, e)
		}
	}
	return out
}

// checkEventLog replays a firmware event log against the quoted sha256 PCRs.
func checkEventLog(raw []byte, pcrs map[int][]byte) ([]failure.Event, *bool) {
	l, err := eventlog.Parse(raw)
	if err != nil {
		return []failure.Event{{ID: failure.MeasuredBootInvalidLog, Severity: failure.Critical, Context: err.Error()}}, nil
	}
	evs := eventlog.Verify(l, eventlog.AlgSHA256, pcrs)
	var sb *bool
	if st, err := l.SecureBoot(); err == nil && st.Measured {
		on := st.Enabled
		sb = &on
	}
	return evs, sb
}

// PolicyDigest is the digest the hub records for a policy document.
func PolicyDigest(doc []byte) string {
	d := sha256.Sum256(doc)
	return hex.EncodeToString(d[:])
}
