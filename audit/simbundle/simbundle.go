// Package simbundle builds evidence bundles from real TPM quotes for the
// auditor's tests: a go-tpm-tools simulator with the agent's own EK and AK
// code (device/tpm), credential activation, PCR 10 extended with the
// entries of a real kernel IMA log, claims bound as qualifying data, a
// signed runtime policy, and a reboot. Test-only: it must not be imported
// by anything but tests (it links the cgo simulator).
package simbundle

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/veraison/go-cose"

	"github.com/ratatouille/rat/audit/policysig"
	"github.com/ratatouille/rat/device/tpm"
	"github.com/ratatouille/rat/evidence/bundle"
	"github.com/ratatouille/rat/evidence/claims"
	"github.com/ratatouille/rat/evidence/credential"
	"github.com/ratatouille/rat/evidence/eventlog"
	"github.com/ratatouille/rat/evidence/ima"
	"github.com/ratatouille/rat/evidence/protocol"
	"github.com/ratatouille/rat/evidence/quote"
	"github.com/ratatouille/rat/evidence/runtimepolicy"
)

// Fixture is everything a test needs to build and audit bundles.
type Fixture struct {
	Header  *bundle.Header
	Policy  *bundle.Policy
	Records []*protocol.Evidence
	// Entries are the IMA entries of the first boot, in order.
	Entries []ima.Entry
	// HubKey signs the binding and (optionally) bundles.
	HubKey *ecdsa.PrivateKey
	// PolicyKeyPEM is the policy signer's public key.
	PolicyKeyPEM []byte
	// EKRootsDir holds the test manufacturer CA that issued the EK cert.
	EKRootsDir string
	// AKPEM is the AK public key in PEM (for tpm2_checkquote).
	AKPEM []byte
	// Evil is the path the violating variant allows no digest for.
	Evil string
}

// Options select a variant.
type Options struct {
	// Violation removes one entry's path from the policy, so that entry
	// (inside the span) is not allowed.
	Violation bool
	// EventLog is a real firmware event log (binary_bios_measurements):
	// at each boot the simulator's PCRs are extended with its events, as
	// the firmware would, and the log travels with the boot's first quote.
	EventLog string
	// SelfIssued makes an air-gapped device's bundle: no verifier nonces,
	// each nonce derived from the previous quote and the sequence number.
	SelfIssued bool
	// MiscountIMA is added to the IMA count claimed by boot 1's third
	// quote: the agent's count is off (as when the kernel kept measuring
	// while it quoted), while the entries replay to the quoted PCR 10.
	MiscountIMA int
}

// Build makes the fixture. dir receives the EK roots.
func Build(logPath, dir string, opt Options) (*Fixture, error) {
	entries, err := readLog(logPath)
	if err != nil {
		return nil, err
	}
	sim, err := simulator.Get()
	if err != nil {
		return nil, fmt.Errorf("simbundle: simulator: %w", err)
	}
	t := tpm.New(transport.FromReadWriteCloser(sim))
	defer t.Close()
	f := &Fixture{Entries: entries}
	var evLog []byte
	var fw []eventlog.Event
	if opt.EventLog != "" {
		if evLog, err = os.ReadFile(opt.EventLog); err != nil {
			return nil, err
		}
		l, err := eventlog.Parse(evLog)
		if err != nil {
			return nil, err
		}
		fw = l.Events
	}
	firmware := func() error {
		for _, e := range fw {
			if e.Type == eventlog.EvNoAction || e.PCR == 10 {
				continue
			}
			d, ok := e.Digest(uint16(tpm2.TPMAlgSHA256))
			if !ok {
				return fmt.Errorf("simbundle: event %d has no sha256 digest", e.Num)
			}
			if err := t.Extend(e.PCR, d); err != nil {
				return err
			}
		}
		return nil
	}
	if err := firmware(); err != nil {
		return nil, err
	}

	id, err := newIdentity(t, dir, opt.SelfIssued)
	if err != nil {
		return nil, err
	}
	ak, ueid := id.ak, id.ueid
	f.HubKey, f.EKRootsDir, f.AKPEM, f.Header = id.hubKey, dir, id.akPEM, id.header
	const t0 = startTime

	// The runtime policy: generated from the log (as the hub's baseline
	// is), signed with a key as `rat policy sign` does.
	pol, err := runtimepolicy.FromEntries(entries)
	if err != nil {
		return nil, err
	}
	if opt.Violation {
		f.Evil = entries[len(entries)/2].Path
		delete(pol.Digests, f.Evil)
	}
	doc, err := pol.Marshal()
	if err != nil {
		return nil, err
	}
	polKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	sb, err := policysig.SignWithKey(context.Background(), doc, polKey)
	if err != nil {
		return nil, err
	}
	pk, _ := x509.MarshalPKIXPublicKey(&polKey.PublicKey)
	f.PolicyKeyPEM = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pk})
	f.Policy = &bundle.Policy{Name: "Baseline::lab", Since: t0, FromSeq: 1, Document: doc, SigstoreBundle: sb}

	// The agent loop: extend PCR 10 as IMA would, quote with the claims
	// digest as qualifying data. Boot 1 has 5 quotes (one delta split into
	// an IMA-only chunk plus its quoted record, one heartbeat); then a
	// reboot and a second boot with 2 quotes.
	a := &agent{t: t, ak: ak, ueid: ueid, time: t0, step: 600, eventLog: evLog, selfIssued: opt.SelfIssued}
	cuts := []int{1, len(entries) / 3, len(entries) / 2, len(entries) / 2, len(entries)}
	done := 0
	for i, c := range cuts {
		if i == 1 {
			// An IMA-only chunk: entries extended but not yet quoted.
			mid := (done + c) / 2
			if err := a.extend(entries[done:mid]); err != nil {
				return nil, err
			}
			a.chunk(entries[done:mid], uint64(done))
			if err := a.extend(entries[mid:c]); err != nil {
				return nil, err
			}
			if err := a.quote(entries[mid:c], uint64(mid), uint64(c), "boot-1"); err != nil {
				return nil, err
			}
		} else {
			if err := a.extend(entries[done:c]); err != nil {
				return nil, err
			}
			count := uint64(c)
			if i == 2 {
				count = uint64(c + opt.MiscountIMA)
			}
			if err := a.quote(entries[done:c], uint64(done), count, "boot-1"); err != nil {
				return nil, err
			}
		}
		done = c
	}
	// Reboot: TPM reset; the AK is a primary, so the same key comes back.
	if err := sim.Reset(); err != nil {
		return nil, fmt.Errorf("simbundle: reset: %w", err)
	}
	if a.ak, err = t.CreateAK(); err != nil {
		return nil, err
	}
	if err := firmware(); err != nil {
		return nil, err
	}
	a.eventLogSent = false
	if !bytes.Equal(a.ak.PublicArea, ak.PublicArea) {
		return nil, fmt.Errorf("simbundle: AK changed across reset")
	}
	boot2 := entries[:40]
	if err := a.extend(boot2); err != nil {
		return nil, err
	}
	if err := a.quote(boot2, 0, uint64(len(boot2)), "boot-2"); err != nil {
		return nil, err
	}
	if err := a.quote(nil, uint64(len(boot2)), uint64(len(boot2)), "boot-2"); err != nil {
		return nil, err
	}
	f.Records = a.records
	return f, nil
}

// startTime is the fixtures' first device time (NumericDate).
const startTime = 1_800_000_000

// identity is a simulated device's TPM identity as the hub enrolled it:
// EK (with a test manufacturer certificate), AK bound by real credential
// activation, the hub key that signed the binding, and the bundle header.
type identity struct {
	ak     *tpm.AK
	ueid   []byte
	hubKey *ecdsa.PrivateKey
	akPEM  []byte
	header *bundle.Header
}

// newIdentity creates the EK and AK on t, activates the credential as the
// hub does at enrollment, and writes the EK roots to dir/ca.pem.
func newIdentity(t *tpm.TPM, dir string, selfIssued bool) (*identity, error) {
	ek, err := t.CreateEK()
	if err != nil {
		return nil, err
	}
	ak, err := t.CreateAK()
	if err != nil {
		return nil, err
	}
	// Credential activation, as the hub does at enrollment.
	ch, err := credential.Make(ek.PublicArea, ak.PublicArea)
	if err != nil {
		return nil, err
	}
	answer, err := ek.ActivateCredential(ak, ch.IDObject, ch.EncSecret)
	if err != nil {
		return nil, err
	}
	if err := ch.Check(answer); err != nil {
		return nil, err
	}
	_ = ek.Close()
	id := &identity{ak: ak}
	id.hubKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	signer, err := cose.NewSigner(cose.AlgorithmES256, id.hubKey)
	if err != nil {
		return nil, err
	}
	const t0 = startTime
	binding, err := bundle.SignBinding(signer, &bundle.Binding{AKPublic: ak.PublicArea, EKPublic: ek.PublicArea, Method: bundle.BindingMethod, Time: t0 - 3600, Hub: "hub-test", Device: "dev-1"})
	if err != nil {
		return nil, err
	}
	ekCert, err := issueEKCert(ek.PublicArea, dir)
	if err != nil {
		return nil, err
	}
	akDER, _ := x509.MarshalPKIXPublicKey(ak.Public)
	id.akPEM = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: akDER})
	hubDER, _ := x509.MarshalPKIXPublicKey(&id.hubKey.PublicKey)
	id.ueid = claims.UEID(ek.PublicArea)
	tok, err := bundle.NewToken(id.ueid, "hub-test", "dev-1", time.Unix(t0+7200, 0))
	if err != nil {
		return nil, err
	}
	tok.SpanFrom, tok.SpanTo = t0, t0+7200
	if selfIssued {
		tok.Issuer, tok.SelfIssued = "device", true
	}
	id.header = &bundle.Header{Token: tok, EKPublic: ek.PublicArea, EKCerts: [][]byte{ekCert}, AKPublic: ak.PublicArea, Binding: binding, HubKey: hubDER}
	return id, nil
}

type agent struct {
	t       *tpm.TPM
	ak      *tpm.AK
	ueid    []byte
	seq     uint64
	prev    []byte
	time    int64
	records []*protocol.Evidence
	// nonceSize is the verifier nonce's length (the hub issues 32 bytes).
	nonceSize int
	lastClock quote.ClockInfo
	haveClock bool
	// step is the device time between quotes (seconds).
	step int64
	// emit, when set, receives each record instead of records.
	emit func(*protocol.Evidence) error
	// eventLog goes with the first quote of each boot.
	eventLog     []byte
	eventLogSent bool
	selfIssued   bool
}

func (a *agent) extend(es []ima.Entry) error {
	for _, e := range es {
		d := sha256.Sum256(e.TemplateData)
		m := d[:]
		if e.IsViolation() {
			m = bytes.Repeat([]byte{0xff}, 32)
		}
		if err := a.t.Extend(10, m); err != nil {
			return err
		}
	}
	return nil
}

func (a *agent) chunk(es []ima.Entry, start uint64) {
	a.seq++
	a.time += 10
	a.records = append(a.records, &protocol.Evidence{Seq: a.seq, IMAStart: start, IMA: ima.MarshalBinary(es), Time: a.time})
}

func (a *agent) quote(es []ima.Entry, start, count uint64, boot string) error {
	a.seq++
	a.time += a.step
	nonce := make([]byte, max(a.nonceSize, 16))
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	c := claims.Claims{Nonce: nonce, UEID: a.ueid, BootID: boot, Release: "1.0.0", Seq: a.seq, Prev: a.prev, IMACount: count}
	if a.selfIssued {
		c.Nonce, c.SelfIssued = claims.SelfNonce(a.prev, a.seq), true
	}
	enc, err := c.Marshal()
	if err != nil {
		return err
	}
	// The TPM clock counts milliseconds and an auditor requires it to move
	// forward between quotes of one boot; a quote made within the same
	// millisecond as the previous one is taken again.
	var q *tpm.Quote
	for attempt := 0; ; attempt++ {
		if q, err = a.ak.Quote(claims.QualifyingData(enc), []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}); err != nil {
			return err
		}
		at, err := quote.DecodeAttest(q.Attest)
		if err != nil {
			return err
		}
		ci := at.ClockInfo
		if !a.haveClock || ci.ResetCount != a.lastClock.ResetCount || ci.RestartCount != a.lastClock.RestartCount || ci.Clock > a.lastClock.Clock {
			a.lastClock, a.haveClock = ci, true
			break
		}
		if attempt > 100 {
			return errors.New("simbundle: the TPM clock does not advance")
		}
		time.Sleep(time.Millisecond)
	}
	r := &protocol.Evidence{Seq: a.seq, Claims: enc, Attest: q.Attest, Signature: q.Signature,
		PCRs: map[uint16]map[int][]byte{uint16(tpm2.TPMAlgSHA256): q.PCRs}, IMAStart: start, Time: a.time}
	if len(es) > 0 {
		r.IMA = ima.MarshalBinary(es)
	}
	if len(a.eventLog) > 0 && !a.eventLogSent {
		r.EventLog, a.eventLogSent = a.eventLog, true
	}
	a.prev = claims.QuoteDigest(q.Attest, q.Signature)
	if a.emit != nil {
		return a.emit(r)
	}
	a.records = append(a.records, r)
	return nil
}

func readLog(path string) ([]ima.Entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ima.Parse(f)
}

// issueEKCert makes a test manufacturer CA (written to dir/ca.pem) and an
// EK certificate for the EK's RSA key with the TCG EK EKU.
func issueEKCert(ekPublicArea []byte, dir string) ([]byte, error) {
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](ekPublicArea)
	if err != nil {
		return nil, err
	}
	rsaParms, err := pub.Parameters.RSADetail()
	if err != nil {
		return nil, err
	}
	n, err := pub.Unique.RSA()
	if err != nil {
		return nil, err
	}
	ekKey, err := tpm2.RSAPub(rsaParms, n)
	if err != nil {
		return nil, err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test TPM Manufacturer Root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	ekTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "Test EK"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageKeyEncipherment,
		UnknownExtKeyUsage: []asn1.ObjectIdentifier{{2, 23, 133, 8, 1}}}
	ekDER, err := x509.CreateCertificate(rand.Reader, ekTmpl, ca, crypto.PublicKey(ekKey), caKey)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		return nil, err
	}
	return ekDER, nil
}
