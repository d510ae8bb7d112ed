package server

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ratatouille/rat/device/agent"
	"github.com/ratatouille/rat/device/imasrc"
	"github.com/ratatouille/rat/evidence/protocol"
	"github.com/ratatouille/rat/hub/store"
	"github.com/ratatouille/rat/hub/verifier"
)

// TestReplyQoS pins which replies travel at QoS 0, so may be lost: only
// acks (TestAgentLostAcks shows an agent loses nothing when they are).
func TestReplyQoS(t *testing.T) {
	for _, tc := range []struct {
		kind string
		qos  byte
	}{
		{protocol.KindAck, 0},
		{protocol.KindChallenge, 1},
		{protocol.KindEnrolled, 1},
		{protocol.KindCommand, 1},
		{protocol.KindTokenResp, 1},
	} {
		if got := replyQoS(tc.kind); got != tc.qos {
			t.Errorf("%s replies at QoS %d, want %d", tc.kind, got, tc.qos)
		}
	}
}

// dropAcks loses every ack while drop is set, as a QoS 0 message to a
// device whose connection hiccups is lost.
type dropAcks struct {
	link
	drop    atomic.Bool
	dropped atomic.Int64
}

func (l *dropAcks) publish(topic string, payload []byte, qos byte, wait bool) error {
	if l.drop.Load() && strings.HasSuffix(topic, "/"+protocol.KindAck) {
		l.dropped.Add(1)
		return nil
	}
	return l.link.publish(topic, payload, qos, wait)
}

// lossyHub is a hub whose replies pass through wrap, with one agent
// (device id, agent window) enrolled and running against it; everything is
// stopped when the test ends.
type lossyHub struct {
	st  *store.Bolt
	s   *Server
	sb  *simBoot
	key string
}

func startLossyHub(t *testing.T, id string, window int, wrap func(link) link) *lossyHub {
	t.Helper()
	dir := t.TempDir()
	st, err := store.OpenBolt(filepath.Join(dir, "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	testHookLink = wrap
	s, err := Start(context.Background(), Config{Store: st, Verifier: verifier.Config{AllowTOFUUnsafe: true}, EmbeddedAddr: "127.0.0.1:0",
		AllowUnsignedPoliciesUnsafe: true, StaleAfter: time.Hour, Log: quiet})
	testHookLink = nil
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	sb := newSimBoot(t, dir)
	a, err := agent.New(agent.Config{DeviceID: id, Fleet: "default", Group: "g", Broker: s.BrokerURL(), TPM: sb.tp,
		IMA: imasrc.NewFile(sb.log), Outbox: sb.ob, BootID: func() (string, error) { return "b", nil }, Baseline: true,
		Poll: 20 * time.Millisecond, Heartbeat: 50 * time.Millisecond, Window: window, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; a.Close() })
	h := &lossyHub{st: st, s: s, sb: sb, key: verifier.Key("default", id)}
	waitState(t, st, h.key, store.Trusted, 10*time.Second)
	return h
}

// TestAgentLostAcks: the hub verifies and stores a device's records but
// every ack is lost, until the agent's window of unacknowledged records is
// full and it stops publishing. Once acks get through again, the agent
// republishes what is unacknowledged (after 5 s without progress), the hub
// answers the duplicates with acks, and the outbox drains: nothing is lost
// and nothing is counted twice.
func TestAgentLostAcks(t *testing.T) {
	const window = 4
	lossy := &dropAcks{}
	h := startLossyHub(t, "lossy", window, func(l link) link { lossy.link = l; return lossy })
	st, s, sb, key := h.st, h.s, h.sb, h.key

	lossy.drop.Store(true)
	deadline := time.Now().Add(10 * time.Second)
	for lossy.dropped.Load() < window && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // the agent keeps quoting into its outbox
	// Every record the hub accepted since is one lost ack, and one record
	// the agent holds as unacknowledged: it must stop at its window.
	if n := lossy.dropped.Load(); n != window {
		t.Fatalf("%d acks lost, want the agent's window (%d): the agent did not stop at it", n, window)
	}
	held, _ := sb.ob.Len()
	if held <= window {
		t.Fatalf("outbox holds %d records, want more than the window of %d", held, window)
	}
	d, _ := st.Device(key)
	acked := d.NextSeq - 1 - window // the agent's last acknowledged record
	dups := s.Metrics.Duplicates.Load()

	lossy.drop.Store(false)
	deadline = time.Now().Add(20 * time.Second)
	for {
		d, _ = st.Device(key)
		n, _ := sb.ob.Len()
		if d.NextSeq-1 >= acked+uint64(held)+2 && n <= window {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the acks came back: hub at seq %d (want ≥ %d), outbox holds %d", d.NextSeq-1, acked+uint64(held)+2, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if s.Metrics.Duplicates.Load() == dups {
		t.Error("the agent did not republish the records whose acks were lost")
	}
	if d.State != store.Trusted {
		t.Errorf("state %s (%s), want TRUSTED", d.State, d.Reason)
	}
}

// dupChallenges delivers every challenge twice, as a QoS 1 message is
// delivered again when the broker resends it after a reconnect.
type dupChallenges struct{ link }

func (l dupChallenges) publish(topic string, payload []byte, qos byte, wait bool) error {
	if strings.HasSuffix(topic, "/"+protocol.KindChallenge) {
		if err := l.link.publish(topic, payload, qos, wait); err != nil {
			return err
		}
	}
	return l.link.publish(topic, payload, qos, wait)
}

// TestAgentDuplicateChallenge: an agent answers a challenge once, however
// often it is delivered, so a redelivered challenge leaves no failed
// activation in the device's history.
func TestAgentDuplicateChallenge(t *testing.T) {
	h := startLossyHub(t, "dup", 0, func(l link) link { return dupChallenges{l} })
	st, key := h.st, h.key
	time.Sleep(300 * time.Millisecond) // a second answer would have arrived by now
	evs, err := st.Events(key, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Kind == "rejected" {
			t.Errorf("history has %q (%v): the agent answered a challenge twice", e.Detail, e.Event)
		}
	}
}
