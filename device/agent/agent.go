package agent

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/ratatouille/rat/device/imasrc"
	"github.com/ratatouille/rat/device/outbox"
	"github.com/ratatouille/rat/device/tpm"
	"github.com/ratatouille/rat/evidence/bundle/wire"
	"github.com/ratatouille/rat/evidence/claims"
	"github.com/ratatouille/rat/evidence/ima"
	"github.com/ratatouille/rat/evidence/protocol"
	"github.com/ratatouille/rat/evidence/quote"
)

// Config configures an Agent. DeviceID, Fleet, Broker, TPM, IMA and Outbox
// are required.
type Config struct {
	DeviceID, Fleet, Group string
	// Broker is the MQTT broker URL: tcp://host:port, or ssl:// (also
	// mqtts://) with TLS.
	Broker string
	// TLS configures ssl:// brokers: the hub's CA and the device's client
	// certificate.
	TLS                *tls.Config
	Username, Password string
	// Dial, when set, opens the connection to the broker instead of a TCP
	// dial (a virtio-serial port, say).
	Dial func(ctx context.Context) (net.Conn, error)

	TPM    *tpm.TPM
	IMA    imasrc.Source
	Outbox *outbox.Outbox

	// BootID returns the kernel's boot id (default: read
	// /proc/sys/kernel/random/boot_id).
	BootID func() (string, error)
	// Release returns the OTA release the device runs ("" if unknown).
	Release func() string
	// EventLog returns the firmware event log, or nil.
	EventLog func() ([]byte, error)

	// AK is the attestation key's kind (default ECC P-256; RSA-2048 for
	// TPMs or verifiers that need it). A change of kind is a new AK and so
	// a new enrollment.
	AK tpm.AKKind
	// PCRs to quote in the sha256 bank (default 0–10).
	PCRs []int
	// Poll is how often the IMA count is checked (default 250 ms);
	// Heartbeat the quote interval when nothing changes (default 10 s).
	Poll, Heartbeat time.Duration
	// Baseline asks the hub, at enrollment, to build the group's baseline
	// policy from this device's log.
	Baseline bool
	// Window bounds records published but not yet acknowledged (default 32).
	Window int
	// Offline attests with no hub at all (an air-gapped device): records
	// carry self-issued nonces (hash-chained from the previous quote) and
	// stay in the outbox until `rat-agent export` writes them to a bundle.
	// Quotes then prove order, not freshness, and the bundle says so.
	Offline bool

	Log *slog.Logger
}

// Agent runs the attestation loop.
type Agent struct {
	cfg  Config
	log  *slog.Logger
	ak   *tpm.AK
	ek   *tpm.EK
	ueid []byte

	client mqtt.Client
	events chan event

	mu            sync.Mutex
	st            outbox.State
	lastPublished uint64
	lastAcked     uint64
	connected     bool
	lastRecord    time.Time
	lastProgress  time.Time // last ack, or first publish after one
	answered      []byte    // IDObject of the last challenge answered
}

type event struct {
	kind string
	data []byte
}

// New checks cfg and loads the TPM keys.
func New(cfg Config) (*Agent, error) {
	if err := protocol.ValidID(cfg.DeviceID); err != nil {
		return nil, fmt.Errorf("agent: device id: %w", err)
	}
	if err := protocol.ValidID(cfg.Fleet); err != nil {
		return nil, fmt.Errorf("agent: fleet: %w", err)
	}
	if cfg.Group == "" {
		cfg.Group = "default"
	}
	if err := protocol.ValidID(cfg.Group); err != nil {
		return nil, fmt.Errorf("agent: group: %w", err)
	}
	if cfg.TPM == nil || cfg.IMA == nil || cfg.Outbox == nil {
		return nil, errors.New("agent: TPM, IMA source and outbox are required")
	}
	if cfg.Broker == "" && cfg.Dial == nil {
		return nil, errors.New("agent: a broker URL is required")
	}
	if len(cfg.PCRs) == 0 {
		cfg.PCRs = []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	}
	if !containsPCR(cfg.PCRs, 10) {
		return nil, errors.New("agent: PCR 10 (IMA) must be quoted")
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 250 * time.Millisecond
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 10 * time.Second
	}
	if cfg.Window <= 0 {
		cfg.Window = 32
	}
	if cfg.BootID == nil {
		cfg.BootID = KernelBootID
	}
	if cfg.Release == nil {
		cfg.Release = func() string { return "" }
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	a := &Agent{cfg: cfg, log: cfg.Log.With("device", cfg.DeviceID), events: make(chan event, 256)}
	ak, err := cfg.TPM.CreateAKWith(cfg.AK)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.ak = ak
	ek, err := cfg.TPM.CreateEK()
	if err != nil {
		ak.Close()
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.ek = ek
	a.ueid = claims.UEID(ek.PublicArea)
	st, err := cfg.Outbox.State()
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("agent: %w", err)
	}
	if st.Enrolled && (!bytes.Equal(st.AKPublic, ak.PublicArea) || st.DeviceID != cfg.DeviceID || st.Fleet != cfg.Fleet) {
		// Another TPM or identity: the stored chain is not ours to continue.
		a.log.Warn("stored enrollment is for another AK or device id; enrolling again")
		st = outbox.State{}
	}
	a.st = st
	return a, nil
}

// Close releases the TPM keys.
func (a *Agent) Close() error {
	var errs []error
	if a.ak != nil {
		errs = append(errs, a.ak.Close())
	}
	if a.ek != nil {
		errs = append(errs, a.ek.Close())
	}
	return errors.Join(errs...)
}

func containsPCR(p []int, x int) bool {
	for _, v := range p {
		if v == x {
			return true
		}
	}
	return false
}

// KernelBootID reads the kernel's boot id.
func KernelBootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("agent: boot id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func (a *Agent) up(kind string) string {
	return protocol.UpTopic(a.cfg.Fleet, a.cfg.DeviceID, kind)
}

// connect starts the MQTT client; it reconnects on its own.
func (a *Agent) connect(ctx context.Context) {
	o := mqtt.NewClientOptions()
	if a.cfg.Dial != nil {
		o.AddBroker("tcp://dial.invalid:1")
		o.SetCustomOpenConnectionFn(func(*url.URL, mqtt.ClientOptions) (net.Conn, error) {
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			return a.cfg.Dial(dctx)
		})
	} else {
		o.AddBroker(strings.Replace(a.cfg.Broker, "mqtts://", "ssl://", 1))
	}
	o.SetClientID(a.cfg.DeviceID)
	o.SetUsername(a.cfg.DeviceID)
	if a.cfg.Username != "" {
		o.SetUsername(a.cfg.Username)
	}
	o.SetPassword(a.cfg.Password)
	if a.cfg.TLS != nil {
		o.SetTLSConfig(a.cfg.TLS)
	}
	o.SetCleanSession(false)
	o.SetAutoReconnect(true)
	o.SetConnectRetry(true)
	o.SetConnectRetryInterval(500 * time.Millisecond)
	o.SetMaxReconnectInterval(5 * time.Second)
	o.SetKeepAlive(30 * time.Second)
	o.SetOrderMatters(false)
	down := protocol.Prefix + "/cmd/" + a.cfg.Fleet + "/" + a.cfg.DeviceID + "/+"
	o.SetOnConnectHandler(func(c mqtt.Client) {
		t := c.Subscribe(down, 1, func(_ mqtt.Client, m mqtt.Message) {
			i := strings.LastIndexByte(m.Topic(), '/')
			select {
			case a.events <- event{kind: m.Topic()[i+1:], data: append([]byte(nil), m.Payload()...)}:
			case <-ctx.Done():
			}
		})
		t.Wait()
		if t.Error() != nil {
			a.log.Error("subscribe failed", "topic", down, "err", t.Error())
			return
		}
		a.events <- event{kind: "connected"}
	})
	o.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		a.log.Warn("broker connection lost", "err", err)
		a.events <- event{kind: "lost"}
	})
	a.client = mqtt.NewClient(o)
	a.client.Connect()
}

func (a *Agent) publish(kind string, msg any) error {
	b, err := protocol.Marshal(msg)
	if err != nil {
		return err
	}
	return a.publishRaw(kind, b)
}

func (a *Agent) publishRaw(kind string, b []byte) error {
	t := a.client.Publish(a.up(kind), publishQoS(kind), false, b)
	// Do not wait for the PUBACK here: acknowledgement is end to end (the
	// hub's Ack), and the outbox keeps the record until then.
	_ = t
	return nil
}

// publishQoS is the MQTT QoS of a message of kind. Evidence travels at
// QoS 0: the hub's Ack is what says a record is safe, and until one covers
// it the record stays in the outbox and is published again on reconnect
// or after 5 s without progress, so QoS 1 would only add the broker's
// PUBACK (and, through Mosquitto, the hub's) to every record. The other
// kinds have no such end-to-end retry and stay QoS 1.
func publishQoS(kind string) byte {
	if kind == protocol.KindEvidence {
		return 0
	}
	return 1
}

// Run enrolls if needed and attests until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	if a.cfg.Offline {
		return a.runOffline(ctx)
	}
	a.connect(ctx)
	defer a.client.Disconnect(250)
	poll := time.NewTicker(a.cfg.Poll)
	defer poll.Stop()
	enrollRetry := time.NewTicker(5 * time.Second)
	defer enrollRetry.Stop()
	var challengeSent bool
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-a.events:
			switch ev.kind {
			case "connected":
				a.connected = true
				a.log.Info("connected to broker")
				if !a.st.Enrolled {
					if err := a.sendEnroll(); err != nil {
						return err
					}
					challengeSent = true
				} else {
					// Republish everything not yet acknowledged.
					a.lastPublished = a.lastAcked
					a.flush()
				}
			case "lost":
				a.connected = false
			case protocol.KindChallenge:
				a.onChallenge(ev.data)
			case protocol.KindEnrolled:
				if err := a.onEnrolled(ev.data); err != nil {
					return err
				}
			case protocol.KindAck:
				a.onAck(ev.data)
			case protocol.KindCommand:
				a.onCommand(ev.data)
			}
		case <-enrollRetry.C:
			if !a.st.Enrolled && a.connected && challengeSent {
				if err := a.sendEnroll(); err != nil {
					return err
				}
			}
		case <-poll.C:
			if !a.st.Enrolled {
				continue
			}
			if err := a.tick(); err != nil {
				a.log.Error("attestation step failed", "err", err)
			}
		}
	}
}

func (a *Agent) runOffline(ctx context.Context) error {
	if a.st.Enrolled {
		return errors.New("agent: this outbox belongs to an enrolled device; offline mode needs its own state directory")
	}
	if a.st.NextSeq == 0 {
		a.st = outbox.State{DeviceID: a.cfg.DeviceID, Fleet: a.cfg.Fleet, AKPublic: a.ak.PublicArea, NextSeq: 1}
		if err := a.cfg.Outbox.SaveState(a.st); err != nil {
			return err
		}
	}
	a.log.Info("attesting offline: self-issued nonces, evidence kept for export")
	poll := time.NewTicker(a.cfg.Poll)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-poll.C:
			if err := a.tick(); err != nil {
				a.log.Error("attestation step failed", "err", err)
			}
		}
	}
}

// Export writes the outbox's records as an offline evidence bundle. With
// no hub there is no AK binding statement and no policy: the auditor
// checks the TPM evidence and the chain, and judges the IMA log against a
// policy of its own.
func (a *Agent) Export(w io.Writer) (int, error) {
	certs, _ := a.cfg.TPM.EKCertificates()
	var ders [][]byte
	for _, idx := range []uint32{0x01c00002, 0x01c0000a, 0x01c00016} {
		if c, ok := certs[idx]; ok {
			ders = append(ders, c)
		}
	}
	tok, err := wire.NewToken(a.ueid, "device", a.cfg.DeviceID, time.Now())
	if err != nil {
		return 0, err
	}
	tok.SelfIssued = a.st.Nonce == nil
	enc, err := wire.NewEncoder(w, &wire.Header{Token: tok, EKPublic: a.ek.PublicArea, EKCerts: ders, AKPublic: a.ak.PublicArea})
	if err != nil {
		return 0, err
	}
	n := 0
	if err := a.cfg.Outbox.All(func(r outbox.Record) error { n++; return enc.WriteEncodedRecord(r.Msg) }); err != nil {
		return n, err
	}
	return n, enc.Close()
}

func (a *Agent) sendEnroll() error {
	certs, err := a.cfg.TPM.EKCertificates()
	if err != nil {
		a.log.Warn("no EK certificate read", "err", err)
	}
	var ders [][]byte
	for _, idx := range []uint32{0x01c00002, 0x01c0000a, 0x01c00016} {
		if c, ok := certs[idx]; ok {
			ders = append(ders, c)
		}
	}
	boot, _ := a.cfg.BootID()
	a.log.Info("enrolling", "group", a.cfg.Group, "ek_certs", len(ders), "baseline", a.cfg.Baseline)
	return a.publish(protocol.KindEnroll, &protocol.Enroll{
		Group: a.cfg.Group, EKPublic: a.ek.PublicArea, EKCerts: ders, AKPublic: a.ak.PublicArea,
		BootID: boot, Release: a.cfg.Release(), Baseline: a.cfg.Baseline,
	})
}

func (a *Agent) onChallenge(data []byte) {
	var c protocol.Challenge
	if err := protocol.Unmarshal(data, &c); err != nil {
		a.log.Warn("bad challenge", "err", err)
		return
	}
	// Answer each challenge once, and only while enrolling: a challenge
	// comes again when the broker redelivers it (QoS 1, after a
	// reconnect), and the hub takes one answer per challenge, so a second
	// answer would only leave a failed activation in the device's history.
	if a.st.Enrolled || bytes.Equal(c.IDObject, a.answered) {
		a.log.Debug("challenge ignored (already answered, or enrolled)")
		return
	}
	a.answered = c.IDObject
	secret, err := a.ek.ActivateCredential(a.ak, c.IDObject, c.EncSecret)
	if err != nil {
		a.log.Error("credential activation failed", "err", err)
		return
	}
	if err := a.publish(protocol.KindActivate, &protocol.Activate{Secret: secret}); err != nil {
		a.log.Error("publish activate", "err", err)
	}
}

func (a *Agent) onEnrolled(data []byte) error {
	var e protocol.Enrolled
	if err := protocol.Unmarshal(data, &e); err != nil {
		a.log.Warn("bad enrollment result", "err", err)
		return nil
	}
	if a.st.Enrolled {
		return nil
	}
	if !e.OK {
		a.log.Error("enrollment refused by the hub", "reason", e.Reason)
		return nil
	}
	st := outbox.State{Enrolled: true, DeviceID: a.cfg.DeviceID, Fleet: a.cfg.Fleet, AKPublic: a.ak.PublicArea, Nonce: e.Nonce, NextSeq: e.NextSeq, QuotePrev: e.QuotePrev}
	if st.NextSeq == 0 {
		st.NextSeq = 1
	}
	boot, _ := a.cfg.BootID()
	if e.BootID == boot && e.IMACount > 0 {
		if err := a.resumeIMA(&st, boot, e.IMACount); err != nil {
			a.log.Warn("cannot resume the hub's IMA position; sending the whole log", "err", err)
		}
	}
	if err := a.cfg.Outbox.SaveState(st); err != nil {
		return fmt.Errorf("agent: save enrollment: %w", err)
	}
	a.mu.Lock()
	a.st = st
	a.lastAcked = st.NextSeq - 1
	a.lastPublished = a.lastAcked
	a.mu.Unlock()
	a.log.Info("enrolled", "next_seq", st.NextSeq)
	return a.makeRecord(false)
}

// resumeIMA sets st's IMA position to count entries of boot by replaying
// them locally.
func (a *Agent) resumeIMA(st *outbox.State, boot string, count uint64) error {
	entries, err := a.cfg.IMA.Read(0)
	if err != nil {
		return err
	}
	if uint64(len(entries)) < count {
		return fmt.Errorf("log has %d entries, hub has %d", len(entries), count)
	}
	v, err := ima.Replay(entries[:count], crypto.SHA256, nil)
	if err != nil {
		return err
	}
	st.BootID, st.IMACount, st.PCR10 = boot, count, v
	return nil
}

func (a *Agent) onAck(data []byte) {
	var ack protocol.Ack
	if err := protocol.Unmarshal(data, &ack); err != nil {
		a.log.Warn("bad ack", "err", err)
		return
	}
	if ack.Rejected {
		a.log.Warn("hub rejected a record", "seq", ack.Seq, "reason", ack.Reason)
	}
	if err := a.cfg.Outbox.Ack(ack.Seq); err != nil {
		a.log.Error("outbox ack", "err", err)
		return
	}
	if ack.Seq > a.lastAcked {
		a.lastAcked = ack.Seq
	}
	a.lastProgress = time.Now()
	if a.lastPublished < a.lastAcked {
		a.lastPublished = a.lastAcked
	}
	if len(ack.Nonce) > 0 && ack.Seq+1 >= a.st.NextSeq {
		// Only the ack of the newest record moves the nonce on: older acks
		// carry nonces that later records have already superseded.
		a.st.Nonce = ack.Nonce
		if err := a.cfg.Outbox.SaveState(a.st); err != nil {
			a.log.Error("save state", "err", err)
		}
	} else if len(ack.Nonce) > 0 {
		a.st.Nonce = ack.Nonce
	}
	if ack.Resync {
		a.resync(ack.NextSeq, ack.QuotePrev, ack.IMAOffset)
	}
	a.flush()
}

func (a *Agent) onCommand(data []byte) {
	var c protocol.Command
	if err := protocol.Unmarshal(data, &c); err != nil {
		a.log.Warn("bad command", "err", err)
		return
	}
	a.log.Warn("command from the hub", "action", c.Action, "reason", c.Reason)
	switch c.Action {
	case "quote":
		if err := a.makeRecord(true); err != nil {
			a.log.Error("quote on request", "err", err)
		}
	}
}

// resync drops every pending record and restarts the chain where the hub
// says it stands; the IMA entries are re-read from the log, so nothing is
// lost.
func (a *Agent) resync(next uint64, prev []byte, imaOffset uint64) {
	a.log.Warn("hub asked for a resync", "next_seq", next, "ima_offset", imaOffset)
	if err := a.cfg.Outbox.Ack(^uint64(0)); err != nil {
		a.log.Error("outbox clear", "err", err)
		return
	}
	st := a.st
	st.NextSeq, st.QuotePrev = next, prev
	boot, _ := a.cfg.BootID()
	st.BootID, st.IMACount, st.PCR10 = boot, 0, nil
	if imaOffset > 0 {
		if err := a.resumeIMA(&st, boot, imaOffset); err != nil {
			a.log.Warn("resync from offset failed; sending the whole log", "err", err)
		}
	}
	if err := a.cfg.Outbox.SaveState(st); err != nil {
		a.log.Error("save state", "err", err)
		return
	}
	a.st = st
	a.lastAcked, a.lastPublished = next-1, next-1
	if err := a.makeRecord(false); err != nil {
		a.log.Error("record after resync", "err", err)
	}
}

// tick makes a record when the IMA list grew or a heartbeat is due, and
// republishes what the hub has not acknowledged for a while (the hub may
// have restarted without the broker noticing).
func (a *Agent) tick() error {
	if a.lastPublished > a.lastAcked && time.Since(a.lastProgress) > 5*time.Second {
		a.log.Info("no acknowledgement; republishing", "from_seq", a.lastAcked+1)
		a.lastPublished = a.lastAcked
		a.lastProgress = time.Now()
		a.flush()
	}
	n, err := a.cfg.IMA.Count()
	if err != nil {
		return err
	}
	boot, err := a.cfg.BootID()
	if err != nil {
		return err
	}
	switch {
	case boot != a.st.BootID, n != a.st.IMACount:
		return a.makeRecord(false)
	case time.Since(a.lastRecord) >= a.cfg.Heartbeat:
		return a.makeRecord(true)
	}
	return nil
}

// makeRecord quotes and stores the records for the entries since the last
// one, then publishes what the window allows.
func (a *Agent) makeRecord(heartbeatAllowed bool) error {
	st := a.st
	boot, err := a.cfg.BootID()
	if err != nil {
		return err
	}
	if boot != st.BootID {
		if st.BootID != "" {
			a.log.Info("new boot: sending the whole measurement list", "boot_id", boot)
		}
		st.BootID, st.IMACount, st.PCR10, st.SentEventLog = boot, 0, nil, false
	}
	r, err := ima.Resume(crypto.SHA256, st.PCR10, int(st.IMACount))
	if err != nil {
		return err
	}
	var (
		entries []ima.Entry
		q       *tpm.Quote
		enc     []byte
		replace uint64
		prev    = st.QuotePrev
		thinned uint64
	)
	for attempt := 0; ; attempt++ {
		entries, err = a.cfg.IMA.Read(st.IMACount)
		if err != nil {
			return err
		}
		heartbeat := len(entries) == 0
		if heartbeat && !heartbeatAllowed && attempt == 0 && boot == a.st.BootID {
			return nil
		}
		seq := st.NextSeq + uint64(chunks(entries)) - 1
		replace, prev, thinned = 0, st.QuotePrev, 0
		if heartbeat && st.SentEventLog {
			if newest, full := a.thinCandidate(); full && newest != nil {
				replace, prev = newest.Seq, newest.Prev
				if m, err := newest.Decode(); err == nil {
					thinned = m.Thinned + 1
				}
				seq = newest.Seq + 1
			}
		}
		// Replayers share their value buffer when copied; start a fresh one.
		work, err := ima.Resume(crypto.SHA256, r.Value(), r.Count())
		if err != nil {
			return err
		}
		if err := work.Advance(entries); err != nil {
			return err
		}
		c := claims.Claims{
			Nonce: st.Nonce, UEID: a.ueid, BootID: boot, Release: a.cfg.Release(),
			Seq: seq, Prev: prev, IMACount: st.IMACount + uint64(len(entries)),
		}
		if len(c.Nonce) == 0 {
			c.Nonce, c.SelfIssued = claims.SelfNonce(prev, seq), true
		}
		enc, err = c.Marshal()
		if err != nil {
			return err
		}
		q, err = a.ak.Quote(claims.QualifyingData(enc), a.cfg.PCRs)
		if err != nil {
			return err
		}
		if bytes.Equal(q.PCRs[10], work.Value()) {
			r = work
			break
		}
		// The kernel logs an entry before it extends PCR 10, and keeps
		// measuring while we quote, so the quote may cover a few entries
		// more or fewer than we read. Read again and quote again, so the
		// claims' IMA count is exact; if the log never settles, send the
		// prefix the quote covers (the hub replays to find it; the claims'
		// count is then only what was read, and an auditor will say so).
		if attempt >= 16 {
			if fresh, err := a.cfg.IMA.Read(st.IMACount); err == nil {
				try, _ := ima.Resume(crypto.SHA256, r.Value(), r.Count())
				if n, err := try.AdvanceTo(fresh, q.PCRs[10]); err == nil {
					a.log.Warn("measurement list kept changing while quoting; sending the prefix the quote covers")
					entries = fresh[:n-int(st.IMACount)]
					r = try
					break
				}
			}
			a.log.Warn("PCR 10 does not match the measurement list after retries; sending as is")
			r = work
			break
		}
		time.Sleep(time.Duration(attempt+1) * time.Millisecond)
	}
	// The firmware event log goes with the first quoted record of a boot
	// that has room for it (a large first delta defers it to the next
	// record); a device without one (no file) never sends it.
	var evlog []byte
	sentLog := st.SentEventLog || a.cfg.EventLog == nil
	if !sentLog {
		l, err := a.cfg.EventLog()
		switch {
		case err != nil || len(l) == 0:
			sentLog = true
		case len(l) > protocol.MaxIMAChunk/2:
			a.log.Warn("firmware event log too large to send; the hub will not see measured boot", "bytes", len(l))
			sentLog = true
		case imaBytes(entries)+len(l) <= protocol.MaxIMAChunk:
			evlog, sentLog = l, true
		}
	}
	recs, err := a.buildRecords(st.NextSeq, entries, st.IMACount, q, enc, evlog, thinned, replace, prev)
	if err != nil {
		return err
	}
	last := recs[len(recs)-1].Seq
	st.NextSeq = last + 1
	st.QuotePrev = claims.QuoteDigest(q.Attest, q.Signature)
	st.IMACount = uint64(r.Count())
	st.PCR10 = r.Value()
	st.SentEventLog = sentLog
	if thinned > 0 {
		st.Thinned++
	}
	if err := a.cfg.Outbox.Append(recs, st, replace); err != nil {
		return fmt.Errorf("agent: outbox: %w", err)
	}
	a.st = st
	a.lastRecord = time.Now()
	a.flush()
	return nil
}

func imaBytes(entries []ima.Entry) int {
	n := 0
	for _, e := range entries {
		n += 32 + len(e.TemplateName) + len(e.TemplateData)
	}
	return n
}

func chunks(entries []ima.Entry) int {
	n, size := 1, 0
	for _, e := range entries {
		l := 32 + len(e.TemplateName) + len(e.TemplateData)
		if size+l > protocol.MaxIMAChunk && size > 0 {
			n++
			size = 0
		}
		size += l
	}
	return n
}

func (a *Agent) buildRecords(seq uint64, entries []ima.Entry, start uint64, q *tpm.Quote, enc, evlog []byte, thinned, replace uint64, prev []byte) ([]outbox.Record, error) {
	var groups [][]ima.Entry
	var cur []ima.Entry
	size := 0
	for _, e := range entries {
		l := 32 + len(e.TemplateName) + len(e.TemplateData)
		if size+l > protocol.MaxIMAChunk && size > 0 {
			groups = append(groups, cur)
			cur, size = nil, 0
		}
		cur = append(cur, e)
		size += l
	}
	groups = append(groups, cur)
	if replace != 0 {
		seq = replace + 1
	}
	var recs []outbox.Record
	now := time.Now().Unix()
	for i, g := range groups {
		m := &protocol.Evidence{Seq: seq + uint64(i), IMAStart: start, Time: now}
		if len(g) > 0 {
			m.IMA = ima.MarshalBinary(g)
		}
		start += uint64(len(g))
		if i == len(groups)-1 {
			m.Claims, m.Attest, m.Signature = enc, q.Attest, q.Signature
			m.PCRs = map[uint16]map[int][]byte{quote.AlgSHA256: q.PCRs}
			m.EventLog = evlog
			m.Thinned = thinned
		}
		b, err := protocol.Marshal(m)
		if err != nil {
			return nil, err
		}
		recs = append(recs, outbox.Record{Seq: m.Seq, Heartbeat: len(g) == 0, Prev: prev, Msg: b})
	}
	return recs, nil
}

// thinCandidate returns the newest pending record when the outbox is full
// and that record is a heartbeat that was never published.
func (a *Agent) thinCandidate() (*outbox.Record, bool) {
	full, err := a.cfg.Outbox.Full()
	if err != nil || !full {
		return nil, false
	}
	n, err := a.cfg.Outbox.Newest()
	if err != nil || n == nil || !n.Heartbeat || n.Seq <= a.lastPublished {
		return nil, true
	}
	return n, true
}

// flush publishes pending records past lastPublished, up to the window.
func (a *Agent) flush() {
	if !a.connected || !a.client.IsConnectionOpen() {
		return
	}
	room := a.cfg.Window - int(a.lastPublished-a.lastAcked)
	if room <= 0 {
		return
	}
	if a.lastPublished == a.lastAcked {
		a.lastProgress = time.Now()
	}
	recs, err := a.cfg.Outbox.Pending(a.lastPublished, room)
	if err != nil {
		a.log.Error("outbox read", "err", err)
		return
	}
	for _, r := range recs {
		if err := a.publishRaw(protocol.KindEvidence, r.Msg); err != nil {
			a.log.Error("publish", "seq", r.Seq, "err", err)
			return
		}
		a.lastPublished = r.Seq
	}
}

// NewNonce returns a random nonce (for tests and self-issued exports).
func NewNonce() []byte {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}
