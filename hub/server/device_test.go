package server

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/ratatouille/rat/device/imasim"
	"github.com/ratatouille/rat/device/tpm"
	"github.com/ratatouille/rat/evidence/claims"
	"github.com/ratatouille/rat/evidence/eventlog"
	"github.com/ratatouille/rat/evidence/ima"
	"github.com/ratatouille/rat/evidence/protocol"
	"github.com/ratatouille/rat/evidence/quote"
	"github.com/ratatouille/rat/evidence/runtimepolicy"
	"github.com/ratatouille/rat/hub/store"
	"github.com/ratatouille/rat/hub/verifier"
)

// testHub is a hub with its embedded broker on a free port.
func testHub(t *testing.T) *Server {
	t.Helper()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Start(context.Background(), Config{Store: st, Verifier: verifier.Config{AllowTOFUUnsafe: true}, EmbeddedAddr: "127.0.0.1:0",
		AllowUnsignedPoliciesUnsafe: true, StaleAfter: time.Hour, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); st.Close() })
	return s
}

// wireDevice speaks the protocol by hand, with a real (simulated) TPM and
// simulated IMA, so that tests can send exactly the message they mean —
// good or deviant — and see the hub's answer.
type wireDevice struct {
	t        *testing.T
	id       string
	tpm      *tpm.TPM
	ak       *tpm.AK
	ek       *tpm.EK
	ima      *imasim.Simulator
	log      string
	c        paho.Client
	inbox    chan inMsg
	seq      uint64
	prev     []byte
	nonce    []byte
	count    uint64
	commands [][]byte
}

type inMsg struct {
	kind string
	data []byte
}

func newWireDevice(t *testing.T, s *Server, id string) *wireDevice {
	return newWireDeviceBoot(t, s, id, nil)
}

// newWireDeviceBoot runs firmware (extends of PCRs 0–9) before IMA starts.
func newWireDeviceBoot(t *testing.T, s *Server, id string, firmware func(*tpm.TPM)) *wireDevice {
	t.Helper()
	sim, err := simulator.Get()
	if err != nil {
		t.Fatal(err)
	}
	tp := tpm.New(transport.FromReadWriteCloser(sim))
	t.Cleanup(func() { tp.Close() })
	ak, err := tp.CreateAK()
	if err != nil {
		t.Fatal(err)
	}
	ek, err := tp.CreateEK()
	if err != nil {
		t.Fatal(err)
	}
	if firmware != nil {
		firmware(tp)
	}
	logPath := filepath.Join(t.TempDir(), "ima.bin")
	ms, err := imasim.Open(tp, logPath)
	if err != nil {
		t.Fatal(err)
	}
	d := &wireDevice{t: t, id: id, tpm: tp, ak: ak, ek: ek, ima: ms, log: logPath, inbox: make(chan inMsg, 64), seq: 1}
	d.c = dial(t, s.BrokerURL(), id)
	tok := d.c.Subscribe(protocol.Prefix+"/cmd/default/"+id+"/+", 1, func(_ paho.Client, m paho.Message) {
		i := strings.LastIndexByte(m.Topic(), '/')
		d.inbox <- inMsg{m.Topic()[i+1:], append([]byte(nil), m.Payload()...)}
	})
	tok.Wait()
	if tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	return d
}

func dial(t *testing.T, url, user string) paho.Client {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(user).SetUsername(user).SetCleanSession(true))
	tok := c.Connect()
	tok.Wait()
	if tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c
}

func (d *wireDevice) publish(kind string, b []byte) {
	d.t.Helper()
	tok := d.c.Publish(protocol.UpTopic("default", d.id, kind), 1, false, b)
	tok.Wait()
	if tok.Error() != nil {
		d.t.Fatal(tok.Error())
	}
}

func (d *wireDevice) expect(kind string) []byte {
	d.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m := <-d.inbox:
			if m.kind == protocol.KindCommand && kind != protocol.KindCommand {
				d.commands = append(d.commands, m.data) // revocation commands arrive on their own topic
				continue
			}
			if m.kind != kind {
				d.t.Fatalf("got %s, want %s", m.kind, kind)
			}
			return m.data
		case <-timeout:
			d.t.Fatalf("no %s from the hub", kind)
		}
	}
}

func (d *wireDevice) enroll(group string) {
	d.t.Helper()
	b, err := protocol.Marshal(&protocol.Enroll{Group: group, EKPublic: d.ek.PublicArea, AKPublic: d.ak.PublicArea, BootID: "boot-1"})
	if err != nil {
		d.t.Fatal(err)
	}
	d.publish(protocol.KindEnroll, b)
	var ch protocol.Challenge
	if err := protocol.Unmarshal(d.expect(protocol.KindChallenge), &ch); err != nil {
		d.t.Fatal(err)
	}
	secret, err := d.ek.ActivateCredential(d.ak, ch.IDObject, ch.EncSecret)
	if err != nil {
		d.t.Fatal(err)
	}
	b, _ = protocol.Marshal(&protocol.Activate{Secret: secret})
	d.publish(protocol.KindActivate, b)
	var e protocol.Enrolled
	if err := protocol.Unmarshal(d.expect(protocol.KindEnrolled), &e); err != nil || !e.OK {
		d.t.Fatalf("enrollment: %v %+v", err, e)
	}
	d.nonce = e.Nonce
}

// record builds the next quoted record covering every entry logged so far;
// mutate may change the claims before quoting.
func (d *wireDevice) record(mutate func(c *claims.Claims, entries *[]ima.Entry, start *uint64)) (*protocol.Evidence, []byte) {
	d.t.Helper()
	all, err := ima.ParseBinary(mustOpen(d.t, d.log))
	if err != nil {
		d.t.Fatal(err)
	}
	delta := all[d.count:]
	start := d.count
	c := claims.Claims{Nonce: d.nonce, UEID: claims.UEID(d.ek.PublicArea), BootID: "boot-1", Seq: d.seq, Prev: d.prev, IMACount: uint64(len(all))}
	if mutate != nil {
		mutate(&c, &delta, &start)
	}
	enc, err := c.Marshal()
	if err != nil {
		d.t.Fatal(err)
	}
	q, err := d.ak.Quote(claims.QualifyingData(enc), []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
	if err != nil {
		d.t.Fatal(err)
	}
	m := &protocol.Evidence{Seq: c.Seq, Claims: enc, Attest: q.Attest, Signature: q.Signature,
		PCRs: map[uint16]map[int][]byte{quote.AlgSHA256: q.PCRs}, IMAStart: start, IMA: ima.MarshalBinary(delta), Time: time.Now().Unix()}
	raw, err := protocol.Marshal(m)
	if err != nil {
		d.t.Fatal(err)
	}
	return m, raw
}

// accept advances the device's own chain after the hub accepted m.
func (d *wireDevice) accepted(m *protocol.Evidence, ack *protocol.Ack) {
	c, _ := claims.Unmarshal(m.Claims)
	d.seq = m.Seq + 1
	d.prev = claims.QuoteDigest(m.Attest, m.Signature)
	d.count = c.IMACount
	d.nonce = ack.Nonce
}

func (d *wireDevice) send(raw []byte) *protocol.Ack {
	d.t.Helper()
	d.publish(protocol.KindEvidence, raw)
	var a protocol.Ack
	if err := protocol.Unmarshal(d.expect(protocol.KindAck), &a); err != nil {
		d.t.Fatal(err)
	}
	return &a
}

func mustOpen(t *testing.T, p string) *bytes.Reader {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(b)
}

func (d *wireDevice) measure(path string, content string) {
	d.t.Helper()
	h := sha256.Sum256([]byte(content))
	if _, err := d.ima.Measure(h[:], path); err != nil {
		d.t.Fatal(err)
	}
}

// policyFor builds a policy allowing everything the device logged so far.
func policyFor(t *testing.T, d *wireDevice) []byte {
	all, err := ima.ParseBinary(mustOpen(t, d.log))
	if err != nil {
		t.Fatal(err)
	}
	return policyFromEntries(t, all)
}

func policyFromEntries(t *testing.T, all []ima.Entry) []byte {
	p, err := runtimepolicy.FromEntries(all)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func state(t *testing.T, s *Server, id string) *store.Device {
	t.Helper()
	d, err := s.Store().Device("default/" + id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func hasEvent(t *testing.T, s *Server, id, eventID string) bool {
	evs, err := s.Store().Events("default/"+id, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Event != nil && e.Event.ID == eventID {
			return true
		}
	}
	return false
}

// TestAbuse sends each kind of bad record from an enrolled, TRUSTED device
// and checks the hub's answer, the recorded reason and the device's state;
// afterwards a good record must still be accepted (the hub keeps serving).
func TestAbuse(t *testing.T) {
	s := testHub(t)
	cases := []struct {
		name      string
		bad       func(t *testing.T, d *wireDevice) []byte // returns the raw bad message
		kind      string                                   // topic kind (default evidence)
		wantEvent string
		wantState string
		noAck     bool // the hub does not answer (undecodable message)
	}{
		{name: "replayed record with changed bytes", wantEvent: "evidence.replay", wantState: store.Trusted,
			bad: func(t *testing.T, d *wireDevice) []byte {
				raw, _ := s.Store().EvidenceRecord("default/"+d.id, d.seq-1)
				var m protocol.Evidence
				_ = protocol.Unmarshal(raw, &m)
				m.Time++
				b, _ := protocol.Marshal(&m)
				return b
			}},
		{name: "stale nonce", wantEvent: "evidence.stale_nonce", wantState: store.Trusted,
			bad: func(t *testing.T, d *wireDevice) []byte {
				_, raw := d.record(func(c *claims.Claims, _ *[]ima.Entry, _ *uint64) { c.Nonce = bytes.Repeat([]byte{9}, 32) })
				return raw
			}},
		{name: "self-issued nonce online", wantEvent: "evidence.stale_nonce", wantState: store.Trusted,
			bad: func(t *testing.T, d *wireDevice) []byte {
				_, raw := d.record(func(c *claims.Claims, _ *[]ima.Entry, _ *uint64) {
					c.Nonce, c.SelfIssued = claims.SelfNonce(c.Prev, c.Seq), true
				})
				return raw
			}},
		{name: "sequence gap", wantEvent: "evidence.seq_gap", wantState: store.Trusted,
			bad: func(t *testing.T, d *wireDevice) []byte {
				_, raw := d.record(func(c *claims.Claims, _ *[]ima.Entry, _ *uint64) { c.Seq += 2 })
				return raw
			}},
		{name: "broken chain", wantEvent: "evidence.chain_broken", wantState: store.Trusted,
			bad: func(t *testing.T, d *wireDevice) []byte {
				_, raw := d.record(func(c *claims.Claims, _ *[]ima.Entry, _ *uint64) { c.Prev = bytes.Repeat([]byte{1}, 32) })
				return raw
			}},
		{name: "delta starting past the hub's position", wantEvent: "evidence.seq_gap", wantState: store.Trusted,
			bad: func(t *testing.T, d *wireDevice) []byte {
				d.measure("/usr/bin/a", "a")
				d.measure("/usr/bin/b", "b")
				_, raw := d.record(func(_ *claims.Claims, es *[]ima.Entry, start *uint64) { *es = (*es)[1:]; *start++ })
				return raw
			}},
		{name: "delta that skips an entry", wantEvent: "ima.pcr_mismatch", wantState: store.Untrusted,
			bad: func(t *testing.T, d *wireDevice) []byte {
				d.measure("/usr/bin/a", "a")
				d.measure("/usr/bin/hidden", "hidden")
				_, raw := d.record(func(_ *claims.Claims, es *[]ima.Entry, _ *uint64) { *es = (*es)[:len(*es)-1] })
				return raw
			}},
		{name: "signature altered", wantEvent: "tpm.quote.invalid_signature", wantState: store.Untrusted,
			bad: func(t *testing.T, d *wireDevice) []byte {
				m, _ := d.record(nil)
				m.Signature[len(m.Signature)-1] ^= 1
				b, _ := protocol.Marshal(m)
				return b
			}},
		{name: "claims changed after quoting", wantEvent: "tpm.quote.nonce_mismatch", wantState: store.Trusted,
			bad: func(t *testing.T, d *wireDevice) []byte {
				m, _ := d.record(nil)
				c, _ := claims.Unmarshal(m.Claims)
				c.Release = "forged"
				m.Claims, _ = c.Marshal()
				b, _ := protocol.Marshal(m)
				return b
			}},
		{name: "truncated CBOR", wantEvent: "evidence.malformed", wantState: store.Trusted, noAck: true,
			bad: func(t *testing.T, d *wireDevice) []byte {
				_, raw := d.record(nil)
				return raw[:len(raw)/2]
			}},
		{name: "oversize message", wantEvent: "evidence.oversize", wantState: store.Trusted, noAck: true,
			bad: func(t *testing.T, d *wireDevice) []byte { return make([]byte, protocol.MaxMessage+100) }},
		{name: "unknown message kind", kind: "shell", wantEvent: "evidence.malformed", wantState: store.Trusted, noAck: true,
			bad: func(t *testing.T, d *wireDevice) []byte { return []byte{0xa0} }},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := "abuse-" + string(rune('a'+i))
			d := newWireDevice(t, s, id)
			d.measure("/usr/bin/ok", "ok")
			if _, err := s.SetPolicy("g"+id, policyFor(t, d), nil, "test", ""); err != nil {
				t.Fatal(err)
			}
			d.enroll("g" + id)
			m, raw := d.record(nil)
			ack := d.send(raw)
			if ack.Rejected || ack.State != store.Trusted {
				t.Fatalf("good record: %+v", ack)
			}
			d.accepted(m, ack)

			kind := tc.kind
			if kind == "" {
				kind = protocol.KindEvidence
			}
			d.publish(kind, tc.bad(t, d))
			if !tc.noAck {
				var a protocol.Ack
				if err := protocol.Unmarshal(d.expect(protocol.KindAck), &a); err != nil {
					t.Fatal(err)
				}
				if tc.wantState == store.Trusted && !a.Rejected {
					t.Fatalf("bad record accepted: %+v", a)
				}
				if a.Resync {
					// The hub says where it stands; an honest device follows.
					d.seq, d.prev, d.count = a.NextSeq, a.QuotePrev, a.IMAOffset
				}
				d.nonce = a.Nonce
			}
			deadline := time.Now().Add(5 * time.Second)
			for !hasEvent(t, s, id, tc.wantEvent) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if !hasEvent(t, s, id, tc.wantEvent) {
				evs, _ := s.Store().Events("default/"+id, 100)
				t.Fatalf("no %s event; events: %+v", tc.wantEvent, evs)
			}
			if got := state(t, s, id).State; got != tc.wantState {
				t.Fatalf("state %s, want %s", got, tc.wantState)
			}
			// The hub keeps serving: a good record from where the hub
			// stands is accepted.
			if tc.wantState == store.Trusted {
				_, raw = d.record(nil)
				ack = d.send(raw)
				if ack.Rejected {
					t.Fatalf("good record after abuse refused: %s", ack.Reason)
				}
			}
		})
	}
}

// TestDeviceCannotPublishAsAnother checks the embedded broker's ACL.
func TestDeviceCannotPublishAsAnother(t *testing.T) {
	s := testHub(t)
	a := newWireDevice(t, s, "victim")
	a.enroll("g")
	before := s.Metrics.Messages.Load()
	mallory := dial(t, s.BrokerURL(), "mallory")
	tok := mallory.Publish(protocol.UpTopic("default", "victim", protocol.KindEvidence), 1, false, []byte{0xa0})
	tok.WaitTimeout(2 * time.Second)
	deadline := time.Now().Add(2 * time.Second)
	for s.Metrics.Denied.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s.Metrics.Denied.Load() == 0 {
		t.Fatal("the broker did not refuse a publish to another device's topic")
	}
	if got := s.Metrics.Messages.Load(); got != before {
		t.Fatalf("the hub received %d messages from the forged publish", got-before)
	}
}

// TestPolicyChangeClearsAndReplays: a violation makes the device UNTRUSTED;
// a new policy that allows the file makes it TRUSTED again, judged on the
// whole boot's log read back from stored evidence.
func TestPolicyChangeRejudges(t *testing.T) {
	s := testHub(t)
	d := newWireDevice(t, s, "dev")
	d.measure("/usr/bin/ok", "ok")
	if _, err := s.SetPolicy("g", policyFor(t, d), nil, "test", ""); err != nil {
		t.Fatal(err)
	}
	d.enroll("g")
	m, raw := d.record(nil)
	d.accepted(m, d.send(raw))
	d.measure("/tmp/evil", "evil")
	m, raw = d.record(nil)
	ack := d.send(raw)
	if ack.State != store.Untrusted {
		t.Fatalf("state after evil: %s", ack.State)
	}
	d.accepted(m, ack)
	// The revocation action sends the device a command.
	for len(d.commands) == 0 {
		d.commands = append(d.commands, d.expect(protocol.KindCommand))
	}
	var cmd protocol.Command
	if err := protocol.Unmarshal(d.commands[0], &cmd); err != nil || cmd.Action != "revoke" {
		t.Fatalf("revocation command: %v %+v", err, cmd)
	}
	dev := state(t, s, "dev")
	if !strings.Contains(dev.Reason, "/tmp/evil") || !strings.Contains(dev.Reason, "ima.validation.ima-ng.not_in_allowlist") {
		t.Fatalf("reason does not name the file and id: %s", dev.Reason)
	}
	// A heartbeat does not clear it.
	m, raw = d.record(nil)
	if a := d.send(raw); a.State != store.Untrusted {
		t.Fatal("UNTRUSTED cleared by a heartbeat")
	} else {
		d.accepted(m, a)
	}
	if _, err := s.SetPolicy("g", policyFor(t, d), nil, "test", ""); err != nil {
		t.Fatal(err)
	}
	if got := state(t, s, "dev").State; got != store.Trusted {
		t.Fatalf("state after the new policy: %s", got)
	}
	// And a policy that drops /usr/bin/ok turns it UNTRUSTED again.
	p := runtimepolicy.Empty()
	doc, _ := p.Marshal()
	if _, err := s.SetPolicy("g", doc, nil, "test", ""); err != nil {
		t.Fatal(err)
	}
	if got := state(t, s, "dev").State; got != store.Untrusted {
		t.Fatalf("state after a stricter policy: %s", got)
	}
	_ = crypto.SHA256
}

// TestEventLog: the first record of a boot carries the firmware event log.
// A log whose events were really extended into the TPM verifies (and gives
// the Secure Boot state); another machine's log does not match the quoted
// PCRs and the device is UNTRUSTED with Keylime's measured-boot id.
func TestEventLog(t *testing.T) {
	s := testHub(t)
	raw, err := os.ReadFile("../../evidence/eventlog/testdata/secureboot-on.bin")
	if err != nil {
		t.Fatal(err)
	}
	l, err := eventlog.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		extend  bool
		want    string
		wantEvt string
	}{
		{"matching log", true, store.Trusted, ""},
		{"another machine's log", false, store.Untrusted, "measured_boot.invalid_pcr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := strings.ReplaceAll(tc.name, " ", "-")
			id = strings.ReplaceAll(id, "'", "")
			var fw func(*tpm.TPM)
			if tc.extend {
				// Firmware's part: every event's sha256 digest into its PCR.
				fw = func(tp *tpm.TPM) {
					for _, e := range l.Events {
						dg, ok := e.Digest(eventlog.AlgSHA256)
						if e.Type == eventlog.EvNoAction || !ok || e.PCR > 9 {
							continue
						}
						if err := tp.Extend(e.PCR, dg); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			d := newWireDeviceBoot(t, s, id, fw)
			if _, err := s.SetPolicy("g"+id, policyFor(t, d), nil, "test", ""); err != nil {
				t.Fatal(err)
			}
			d.enroll("g" + id)
			m, _ := d.record(nil)
			m.EventLog = raw
			b, err := protocol.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			ack := d.send(b)
			if ack.State != tc.want {
				evs, _ := s.Store().Events("default/"+id, 10)
				t.Fatalf("state %s, want %s: %+v", ack.State, tc.want, evs)
			}
			dev := state(t, s, id)
			if tc.wantEvt != "" && !hasEvent(t, s, id, tc.wantEvt) {
				t.Fatalf("no %s event", tc.wantEvt)
			}
			if tc.extend && (!dev.EventLogVerified || dev.SecureBoot == nil || !*dev.SecureBoot) {
				t.Fatalf("event log verified %v, secure boot %v", dev.EventLogVerified, dev.SecureBoot)
			}
		})
	}
}

// TestDecommission: a decommissioned device's evidence and re-enrollment
// are refused; its history stays.
func TestDecommission(t *testing.T) {
	s := testHub(t)
	d := newWireDevice(t, s, "old")
	if _, err := s.SetPolicy("g", policyFor(t, d), nil, "test", ""); err != nil {
		t.Fatal(err)
	}
	d.enroll("g")
	m, raw := d.record(nil)
	d.accepted(m, d.send(raw))
	if err := s.Decommission("default/old", "retired"); err != nil {
		t.Fatal(err)
	}
	_, raw = d.record(nil)
	if a := d.send(raw); !a.Rejected {
		t.Fatal("evidence of a decommissioned device accepted")
	}
	b, _ := protocol.Marshal(&protocol.Enroll{Group: "g", EKPublic: d.ek.PublicArea, AKPublic: d.ak.PublicArea})
	d.publish(protocol.KindEnroll, b)
	var e protocol.Enrolled
	if err := protocol.Unmarshal(d.expect(protocol.KindEnrolled), &e); err != nil || e.OK {
		t.Fatalf("re-enrollment of a decommissioned device: %v %+v", err, e)
	}
	if got := state(t, s, "old"); got.State != store.Decommissioned || got.Quotes != 1 {
		t.Fatalf("%s, %d quotes", got.State, got.Quotes)
	}
}
