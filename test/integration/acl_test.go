package integration

import (
	"bytes"
	"fmt"
	"github.com/ratatouille/rat/test/harness"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/ratatouille/rat/evidence/protocol"
)

// mqttClient connects to m as user with that user's password, as a test
// client (not an agent): it connects once and does not reconnect.
func mqttClient(t *testing.T, m *mosquitto, user, clientID string) mqtt.Client {
	t.Helper()
	o := mqtt.NewClientOptions().AddBroker(m.url()).SetClientID(clientID).SetUsername(user).SetPassword(m.pass[user]).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
	c := mqtt.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt connect as %s: %v", user, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// publish publishes at QoS 1 and waits for the broker's PUBACK (which
// Mosquitto sends for a publish its ACL drops, too: MQTT 3.1.1 has no way
// to say no).
func publish(t *testing.T, c mqtt.Client, topic string, payload []byte) {
	t.Helper()
	tok := c.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// TestMosquittoACL checks the documented ACL against a real Mosquitto: a
// device cannot speak for another device, read another's commands, or take
// over another client's session; and what a device sends on its own topics
// that does not decode is recorded against it while the hub keeps serving.
func TestMosquittoACL(t *testing.T) {
	t.Parallel() // each test has its own processes on its own ports
	logs := t.TempDir()
	const a, b, group = "dev-a", "dev-b", "acl"
	m := startMosquitto(t, logs, a, b)
	work := t.TempDir()
	rootfs := filepath.Join(work, "rootfs")
	approved := writeFiles(t, rootfs, "init", "app")
	h := startHub(t, logs, filepath.Join(work, "hub"), m.url(), m.passwordFile(t, "rat-hub"),
		"--ek-tofu-unsafe", "--allow-unsigned-policies-unsafe", "--stale-after", "5m")
	// A long heartbeat: A sends evidence only when a file runs, so "A's
	// evidence is unchanged" is exact.
	devA, spA := startDevsim(t, logs, a, group, m.url(), m.passwordFile(t, a), rootfs, filepath.Join(work, "a"), time.Hour)
	h.waitState(t, a, "TRUSTED", 30*time.Second)
	h.waitIMA(t, a, uint64(1+len(approved)), 10*time.Second)

	// execA runs an approved file on A and waits for the hub to verify it:
	// A still attests, and every ack the hub sends it has been published.
	execA := func(what string) harness.DeviceView {
		t.Helper()
		before := h.mustDevice(t, a)
		spA.exec(t, approved[0])
		d := h.waitIMA(t, a, before.IMAEntries+1, 15*time.Second)
		if d.State != "TRUSTED" || d.Quotes <= before.Quotes {
			t.Fatalf("%s: A is %s (%s), quotes %d → %d", what, d.State, d.Reason, before.Quotes, d.Quotes)
		}
		return d
	}
	messages := func() uint64 { return h.metric(t, "rat_hub_messages_total") }

	t.Run("B publishing on A's topics is dropped by the broker", func(t *testing.T) {
		evBefore, recBefore, msgBefore := h.Events(t, a), h.evidence(t, a), messages()
		cb := mqttClient(t, m, b, b)
		forged, err := protocol.Marshal(&protocol.Evidence{Seq: 99, IMAStart: 0, Time: time.Now().Unix()})
		if err != nil {
			t.Fatal(err)
		}
		for _, kind := range []string{protocol.KindEvidence, protocol.KindEnroll, protocol.KindActivate} {
			publish(t, cb, protocol.UpTopic("default", a, kind), forged[:len(forged)/2])
		}
		// Control: B's own topic reaches the hub, after the forged ones
		// (one publisher, QoS 1: in order). Had any forged message passed,
		// the hub would count more than one, and A would show a rejection.
		publish(t, cb, protocol.UpTopic("default", b, protocol.KindEvidence), forged)
		harness.Eventually(t, 10*time.Second, "the hub receives B's own message", func() (bool, string) {
			n := messages()
			return n > msgBefore, fmt.Sprintf("%d messages", n-msgBefore)
		})
		time.Sleep(300 * time.Millisecond)
		if n := messages() - msgBefore; n != 1 {
			t.Errorf("the hub received %d messages, want only B's own: the broker let a forged one through", n)
		}
		if ev := h.Events(t, a); len(ev) != len(evBefore) {
			t.Errorf("A's events changed: %d → %d (%+v)", len(evBefore), len(ev), ev[len(evBefore):])
		}
		if rec := h.evidence(t, a); len(rec) != len(recBefore) {
			t.Errorf("A's evidence changed: %d → %d records", len(recBefore), len(rec))
		}
	})

	t.Run("B subscribing to A's commands receives nothing", func(t *testing.T) {
		cb := mqttClient(t, m, b, b)
		var mu sync.Mutex
		var got []string
		for _, filter := range []string{protocol.Prefix + "/cmd/default/" + a + "/+", "#"} {
			tok := cb.Subscribe(filter, 1, func(_ mqtt.Client, msg mqtt.Message) {
				mu.Lock()
				got = append(got, msg.Topic())
				mu.Unlock()
			})
			if !tok.WaitTimeout(10 * time.Second) {
				t.Fatalf("subscribe %s: no SUBACK", filter)
			}
		}
		execA("while B listens") // the hub acks A on A's command topic
		time.Sleep(300 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		for _, topic := range got {
			if strings.Contains(topic, "/"+a+"/") {
				t.Errorf("B received A's message on %s", topic)
			}
		}
	})

	t.Run("B cannot take over another client's session", func(t *testing.T) {
		// With use_username_as_clientid, B connecting under A's client id
		// or the hub's is just B again; without it, Mosquitto would
		// disconnect A or the hub.
		for _, id := range []string{a, "rat-hub-default", "rat-hub"} {
			mqttClient(t, m, b, id).Disconnect(100)
		}
		time.Sleep(500 * time.Millisecond)
		if harness.FileContains(devA.Log, "broker connection lost") {
			t.Error("A lost its broker connection when B connected under A's client id")
		}
		if harness.FileContains(h.proc.Log, "hub lost the broker") {
			t.Error("the hub lost its broker connection when B connected under its client id")
		}
		execA("after the takeover attempts")
	})

	t.Run("undecodable messages on A's own topic are recorded and refused", func(t *testing.T) {
		valid, err := protocol.Marshal(&protocol.Evidence{Seq: 1, IMAStart: 0, Time: time.Now().Unix()})
		if err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			name    string
			kind    string
			payload []byte
			wantID  string // "" : the broker refuses the packet; the hub sees nothing
		}{
			{"truncated CBOR evidence", protocol.KindEvidence, valid[:len(valid)-3], "evidence.malformed"},
			{"garbage evidence", protocol.KindEvidence, []byte("\xff\x00not cbor at all"), "evidence.malformed"},
			{"truncated CBOR enroll", protocol.KindEnroll, valid[:2], "evidence.malformed"},
			{"evidence over the 128 KiB bound", protocol.KindEvidence, bytes.Repeat([]byte{0xa5}, protocol.MaxMessage+1024), "evidence.oversize"},
			{"unknown message kind", "bogus", valid, "evidence.malformed"},
			{"packet over the broker's max_packet_size", protocol.KindEvidence, bytes.Repeat([]byte{0xa5}, 140000), ""},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				evBefore, recBefore, msgBefore := h.Events(t, a), h.evidence(t, a), messages()
				// A's own credentials (a compromised or buggy device): the
				// broker lets it publish on A's topics. The client id is the
				// username, so this takes over A's session; A's agent is
				// paused (SIGSTOP) meanwhile, or its immediate reconnect
				// would take the session back first. Resumed, it
				// reconnects by itself.
				devA.Signal(syscall.SIGSTOP)
				ca := mqttClient(t, m, a, a)
				tok := ca.Publish(protocol.UpTopic("default", a, tc.kind), 1, false, tc.payload)
				if !tok.WaitTimeout(3*time.Second) && tc.wantID != "" { // no PUBACK for a packet the broker refuses
					t.Error("no PUBACK")
				}
				if tc.wantID != "" && tok.Error() != nil {
					t.Errorf("publish: %v", tok.Error())
				}
				ca.Disconnect(100)
				devA.Signal(syscall.SIGCONT)
				if tc.wantID == "" {
					// Mosquitto drops the sender's connection; had the
					// packet reached the hub, it would be recorded on A.
					execA("after the refused packet")
					for _, e := range h.Events(t, a)[len(evBefore):] {
						if e.Kind == "rejected" {
							t.Errorf("the hub saw the refused packet: %+v", e.Event)
						}
					}
					if msgs := messages() - msgBefore; msgs == 0 {
						t.Error("the hub received nothing, not even A's next record")
					}
					return
				}
				var got *harness.HubEvent
				harness.Eventually(t, 10*time.Second, "a rejected event on A", func() (bool, string) {
					ev := h.Events(t, a)
					for i := len(evBefore); i < len(ev); i++ {
						if ev[i].Kind == "rejected" && ev[i].Event != nil {
							got = &ev[i]
							return true, ""
						}
					}
					return false, fmt.Sprintf("%d new events", len(ev)-len(evBefore))
				})
				if got.Event.ID != tc.wantID {
					t.Errorf("rejected as %s (%s), want %s", got.Event.ID, got.Event.Context, tc.wantID)
				}
				if rec := h.evidence(t, a); len(rec) != len(recBefore) {
					t.Errorf("A's evidence changed: %d → %d records", len(recBefore), len(rec))
				}
				if d := h.mustDevice(t, a); d.State != "TRUSTED" {
					t.Errorf("a message that does not decode changed A's state to %s: %s", d.State, d.Reason)
				}
				execA("after " + tc.name)
			})
		}
	})
	if devA.Exited() {
		t.Fatalf("rat-devsim A exited:\n%s", harness.Tail(devA.Log, 20))
	}
}
