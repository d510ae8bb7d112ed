package main

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/ratatouille/rat/device/imasim"
	"github.com/ratatouille/rat/device/tpm"
	"github.com/ratatouille/rat/evidence/claims"
	"github.com/ratatouille/rat/evidence/ima"
	"github.com/ratatouille/rat/evidence/protocol"
	"github.com/ratatouille/rat/evidence/quote"
	"github.com/ratatouille/rat/evidence/runtimepolicy"
)

// maxRecords is how many records one enrollment can carry. The hub keeps the
// last 64 nonces it issued to a device (verifier.Config.NonceWindow) and
// accepts any of them that is not older than the last one used. Records are
// pre-generated, so they cannot use the nonces the hub will issue in its
// acks; they all use the nonce of the Enrolled message. That nonce stays in
// the window until 64 more have been issued, one per ack: so record 64 is
// the last one it can carry.
const maxRecords = 64

// quotedPCRs are the PCRs the hub requires by default.
var quotedPCRs = []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}

// simDevice is one simulated device: its own TPM identity (EK, AK), its
// MQTT connection and its pre-generated evidence records.
type simDevice struct {
	id      string
	c       paho.Client
	records [][]byte // raw protocol.Evidence, seq 1..len

	mu     sync.Mutex
	sent   map[uint64]time.Time
	next   int           // index of the next record to publish
	acked  chan struct{} // closed-loop: one token per ack
	enroll chan inMsg
}

type inMsg struct {
	kind string
	data []byte
}

// genCost is what pre-generation cost the generator.
type genCost struct {
	Devices, Records, IMAEntries int
	Wall                         time.Duration
	SimSetup                     time.Duration // simulator start + EK + AK per device, summed
	Enroll                       time.Duration // credential activation round trips, summed
	Quote                        time.Duration // TPM2_Quote + PCR reads, summed
	Bytes                        int           // encoded evidence bytes
}

// dialDevice connects as the device (client id = username = device id, as
// the hub's broker ACL requires).
func dialDevice(url, id string, onMsg func(kind string, data []byte)) (paho.Client, error) {
	o := paho.NewClientOptions().AddBroker(url).SetClientID(id).SetUsername(id).SetCleanSession(true).
		SetAutoReconnect(false).SetConnectTimeout(10 * time.Second).SetOrderMatters(false).SetWriteTimeout(30 * time.Second)
	c := paho.NewClient(o)
	if t := c.Connect(); !t.WaitTimeout(15*time.Second) || t.Error() != nil {
		return nil, fmt.Errorf("connect %s: %v", id, t.Error())
	}
	t := c.Subscribe(protocol.DownTopic(fleet, id, "+"), 1, func(_ paho.Client, m paho.Message) {
		i := strings.LastIndexByte(m.Topic(), '/')
		onMsg(m.Topic()[i+1:], append([]byte(nil), m.Payload()...))
	})
	if !t.WaitTimeout(15*time.Second) || t.Error() != nil {
		c.Disconnect(0)
		return nil, fmt.Errorf("subscribe %s: %v", id, t.Error())
	}
	return c, nil
}

// pregenerate enrolls each device against the hub and makes its records.
//
// The go-tpm-tools simulator is one per process, so devices are made one
// after the other: each gets a freshly manufactured simulator (a new random
// endorsement seed, hence its own EK and AK), enrolls by real credential
// activation, and then quotes all its records, with imasim extending PCR 10
// for delta IMA entries between quotes. The simulator is then closed; the
// device never needs its TPM again because every record is already signed.
func pregenerate(url, prefix string, n, perDevice, delta int, onAck func(d *simDevice, data []byte)) ([]*simDevice, genCost, error) {
	if perDevice < 1 || perDevice > maxRecords {
		return nil, genCost{}, fmt.Errorf("records per device must be 1..%d (the hub's nonce window)", maxRecords)
	}
	dir, err := os.MkdirTemp("", "rat-loadgen-")
	if err != nil {
		return nil, genCost{}, err
	}
	defer os.RemoveAll(dir)
	cost := genCost{Devices: n}
	t0 := time.Now()
	devs := make([]*simDevice, 0, n)
	for i := 0; i < n; i++ {
		d := &simDevice{id: fmt.Sprintf("%s%06d", prefix, i), sent: map[uint64]time.Time{}, acked: make(chan struct{}, maxRecords), enroll: make(chan inMsg, 4)}
		if err := d.generate(url, filepath.Join(dir, d.id+".ima"), perDevice, delta, &cost, onAck); err != nil {
			for _, x := range devs {
				x.c.Disconnect(0)
			}
			return nil, cost, fmt.Errorf("device %s: %w", d.id, err)
		}
		devs = append(devs, d)
	}
	cost.Wall = time.Since(t0)
	return devs, cost, nil
}

func (d *simDevice) expect(kind string) ([]byte, error) {
	select {
	case m := <-d.enroll:
		if m.kind != kind {
			return nil, fmt.Errorf("got %s, want %s", m.kind, kind)
		}
		return m.data, nil
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("no %s from the hub", kind)
	}
}

func (d *simDevice) generate(url, logPath string, perDevice, delta int, cost *genCost, onAck func(*simDevice, []byte)) error {
	t0 := time.Now()
	sim, err := simulator.Get()
	if err != nil {
		return err
	}
	tp := tpm.New(transport.FromReadWriteCloser(sim))
	defer tp.Close()
	ek, err := tp.CreateEK()
	if err != nil {
		return err
	}
	ak, err := tp.CreateAK()
	if err != nil {
		return err
	}
	ms, err := imasim.Open(tp, logPath)
	if err != nil {
		return err
	}
	defer ms.Close()
	cost.SimSetup += time.Since(t0)

	t1 := time.Now()
	d.c, err = dialDevice(url, d.id, func(kind string, data []byte) {
		if kind == protocol.KindAck {
			onAck(d, data)
			return
		}
		select {
		case d.enroll <- inMsg{kind, data}:
		default:
		}
	})
	if err != nil {
		return err
	}
	b, err := protocol.Marshal(&protocol.Enroll{Group: benchGroup, EKPublic: ek.PublicArea, AKPublic: ak.PublicArea, BootID: "boot-" + d.id})
	if err != nil {
		return err
	}
	if t := d.c.Publish(protocol.UpTopic(fleet, d.id, protocol.KindEnroll), 1, false, b); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		return fmt.Errorf("publish enroll: %v", t.Error())
	}
	raw, err := d.expect(protocol.KindChallenge)
	if err != nil {
		return err
	}
	var ch protocol.Challenge
	if err := protocol.Unmarshal(raw, &ch); err != nil {
		return err
	}
	secret, err := ek.ActivateCredential(ak, ch.IDObject, ch.EncSecret)
	if err != nil {
		return err
	}
	b, _ = protocol.Marshal(&protocol.Activate{Secret: secret})
	if t := d.c.Publish(protocol.UpTopic(fleet, d.id, protocol.KindActivate), 1, false, b); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		return fmt.Errorf("publish activate: %v", t.Error())
	}
	if raw, err = d.expect(protocol.KindEnrolled); err != nil {
		return err
	}
	var en protocol.Enrolled
	if err := protocol.Unmarshal(raw, &en); err != nil {
		return err
	}
	if !en.OK {
		return fmt.Errorf("enrollment refused: %s", en.Reason)
	}
	cost.Enroll += time.Since(t1)

	// Records: the first carries the whole log so far (boot_aggregate and
	// the first delta); each later one the next delta entries. Every file
	// measured is one of the fixed set that benchPolicy approves.
	var prev []byte
	var count, lastClock uint64
	file := 0
	for seq := uint64(1); seq <= uint64(perDevice); seq++ {
		for k := 0; k < delta; k++ {
			name, digest := toolFile(file)
			if _, err := ms.Measure(digest, name); err != nil {
				return err
			}
			file++
		}
		logBytes, err := os.ReadFile(logPath)
		if err != nil {
			return err
		}
		all, err := ima.ParseBinary(bytes.NewReader(logBytes))
		if err != nil {
			return err
		}
		c := claims.Claims{Nonce: en.Nonce, UEID: claims.UEID(ek.PublicArea), BootID: "boot-" + d.id, Seq: seq, Prev: prev, IMACount: uint64(len(all))}
		enc, err := c.Marshal()
		if err != nil {
			return err
		}
		tq := time.Now()
		q, err := ak.Quote(claims.QualifyingData(enc), quotedPCRs)
		if err != nil {
			return err
		}
		// The TPM clock counts milliseconds and the hub requires it to move
		// forward from one quote to the next (a real agent quotes seconds
		// apart); quotes made back to back within one millisecond are
		// taken again.
		for {
			a, err := quote.DecodeAttest(q.Attest)
			if err != nil {
				return err
			}
			if a.ClockInfo.Clock > lastClock {
				lastClock = a.ClockInfo.Clock
				break
			}
			time.Sleep(time.Millisecond)
			if q, err = ak.Quote(claims.QualifyingData(enc), quotedPCRs); err != nil {
				return err
			}
		}
		cost.Quote += time.Since(tq)
		m := &protocol.Evidence{Seq: seq, Claims: enc, Attest: q.Attest, Signature: q.Signature,
			PCRs: map[uint16]map[int][]byte{quote.AlgSHA256: q.PCRs}, IMAStart: count, IMA: ima.MarshalBinary(all[count:]), Time: time.Now().Unix()}
		raw, err := protocol.Marshal(m)
		if err != nil {
			return err
		}
		cost.IMAEntries += len(all) - int(count)
		cost.Records++
		cost.Bytes += len(raw)
		d.records = append(d.records, raw)
		prev = claims.QuoteDigest(q.Attest, q.Signature)
		count = uint64(len(all))
	}
	if len(d.records) == 0 {
		return errors.New("no records")
	}
	return nil
}

// toolFiles is the size of the set of files the simulated devices execute.
const toolFiles = 200

// toolFile is the i-th measured file: its path and content digest.
func toolFile(i int) (string, []byte) {
	name := fmt.Sprintf("/usr/bin/loadgen-tool-%03d", i%toolFiles)
	h := sha256.Sum256([]byte(name))
	return name, h[:]
}

// benchPolicy is the runtime policy of the bench group: it approves every
// tool file (and, as FromEntries does, the boot_aggregate mechanism).
func benchPolicy() ([]byte, error) {
	var es []ima.Entry
	for i := 0; i < toolFiles; i++ {
		name, digest := toolFile(i)
		e, err := ima.NewNgEntry(10, "sha256", digest, name)
		if err != nil {
			return nil, err
		}
		es = append(es, e)
	}
	p, err := runtimepolicy.FromEntries(es)
	if err != nil {
		return nil, err
	}
	return p.Marshal()
}
