package server

import (
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ratatouille/rat/audit/policysig/policysigtest"
	"github.com/ratatouille/rat/evidence/protocol"
	"github.com/ratatouille/rat/hub/store"
	"github.com/ratatouille/rat/ota/rollout"
)

// twinDevice is another device built like base: the same simulated TPM,
// keys and IMA log (the simulator runs one TPM per process), with its own
// id, MQTT connection and evidence chain. The hub keys everything by
// device id, so clones are separate devices to it.
func twinDevice(t *testing.T, s *Server, base *wireDevice, id string) *wireDevice {
	t.Helper()
	d := &wireDevice{t: t, id: id, tpm: base.tpm, ak: base.ak, ek: base.ek, ima: base.ima, log: base.log, inbox: make(chan inMsg, 64), seq: 1}
	d.connect(s)
	return d
}

// connect (re)connects d to s's broker, e.g. after a hub restart.
func (d *wireDevice) connect(s *Server) {
	d.t.Helper()
	d.c = dial(d.t, s.BrokerURL(), d.id)
	tok := d.c.Subscribe(protocol.Prefix+"/cmd/default/"+d.id+"/+", 1, func(_ paho.Client, m paho.Message) {
		i := strings.LastIndexByte(m.Topic(), '/')
		d.inbox <- inMsg{m.Topic()[i+1:], append([]byte(nil), m.Payload()...)}
	})
	tok.Wait()
	if tok.Error() != nil {
		d.t.Fatal(tok.Error())
	}
}

// report sends one record of boot-1 reporting release and returns the ack.
func (d *wireDevice) report(release string) *protocol.Ack {
	d.t.Helper()
	raw := relRecord(d, "boot-1", release, false)
	ack := d.send(raw)
	if ack.Rejected {
		d.t.Fatalf("%s reporting %s: refused: %s", d.id, release, ack.Reason)
	}
	d.acceptRaw(raw, ack)
	return ack
}

// rolloutGroup registers the releases of group edge: N, N+1, N+3
// approved (N+3 then retired), N+2 a draft. Every policy allows the
// fleet's one measured file.
func rolloutGroup(t testing.TB, s *Server, vs *policysigtest.Sigstore) {
	t.Helper()
	doc := releasePolicy(t, map[string]string{"/usr/bin/ok": "ok"})
	for _, v := range []string{"N", "N+1", "N+2", "N+3"} {
		signedRelease(t, s, vs, "edge", v, doc, "release@example.com")
	}
	for _, v := range []string{"N", "N+1", "N+3"} {
		if _, err := s.ApproveRelease("edge", v, "release-owner", "signed"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.SetReleaseState("edge", "N+3", rollout.Retired, "operator", "withdrawn"); err != nil {
		t.Fatal(err)
	}
}

func releaseStates(t testing.TB, s *Server) map[string]rollout.State {
	t.Helper()
	rs, err := s.Releases("edge")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]rollout.State{}
	for _, r := range rs {
		out[r.Version] = r.State
	}
	return out
}

// hubTransitions lists a release's history entries made by the hub.
func hubTransitions(t *testing.T, s *Server, version string) []rollout.Transition {
	t.Helper()
	r, err := s.ReleaseOf("edge", version)
	if err != nil {
		t.Fatal(err)
	}
	var out []rollout.Transition
	for _, h := range r.History {
		if h.By == rollout.HubActor {
			out = append(out, h)
		}
	}
	return out
}

// TestAutoRollout: the hub moves an approved release to rolling-out when
// the first device of its group reports it with verified evidence, and to
// complete when every counted device does; nothing else moves a release,
// a restart keeps the state, and STALE devices hold back completion only
// when the hub is told to wait for them.
func TestAutoRollout(t *testing.T) {
	type step struct {
		do      string // "report" (default), "restart", "decommission"
		dev     string
		release string
		want    map[string]rollout.State // release states after the step
		devWant string                   // the device's state after the step, if set
		reason  string                   // a substring of the step's hub transition reason
	}
	cases := []struct {
		name      string
		waitStale bool
		stale     []string // devices whose only record is two days old: STALE at once
		fleet     []string // enrolled and reporting N before the steps
		steps     []step
	}{
		{name: "first report rolls out, the last completes", fleet: []string{"a", "b", "c"}, steps: []step{
			{dev: "a", release: "N+1", want: map[string]rollout.State{"N": rollout.Complete, "N+1": rollout.RollingOut}, reason: "first device of edge reporting it with verified evidence: default/a"},
			{dev: "b", release: "N+1", want: map[string]rollout.State{"N+1": rollout.RollingOut}},
			// N's completion stays: completing N+1 changes nothing of N.
			{dev: "c", release: "N+1", want: map[string]rollout.State{"N": rollout.Complete, "N+1": rollout.Complete}, reason: "all 3 attesting devices of edge report it with verified evidence (last: default/c)"},
		}},
		{name: "unapproved and retired releases advance nothing", fleet: []string{"a", "b"}, steps: []step{
			{dev: "a", release: "N+2", devWant: store.Untrusted, want: map[string]rollout.State{"N+1": rollout.Approved, "N+2": rollout.Draft}},
			{dev: "b", release: "N+3", devWant: store.Untrusted, want: map[string]rollout.State{"N+1": rollout.Approved, "N+2": rollout.Draft, "N+3": rollout.Retired}},
		}},
		{name: "an UNTRUSTED device holds back completion until decommissioned", fleet: []string{"a", "b"}, steps: []step{
			{dev: "b", release: "N+2", devWant: store.Untrusted, want: map[string]rollout.State{"N+1": rollout.Approved}},
			{dev: "a", release: "N+1", devWant: store.Trusted, want: map[string]rollout.State{"N+1": rollout.RollingOut}},
			{do: "decommission", dev: "b", want: map[string]rollout.State{"N+1": rollout.Complete, "N+2": rollout.Draft}, reason: "all 1 attesting devices"},
		}},
		{name: "restart mid-rollout keeps the state", fleet: []string{"a", "b"}, steps: []step{
			{dev: "a", release: "N+1", want: map[string]rollout.State{"N+1": rollout.RollingOut}},
			{do: "restart", want: map[string]rollout.State{"N+1": rollout.RollingOut}},
			{dev: "b", release: "N+1", want: map[string]rollout.State{"N+1": rollout.Complete}, reason: "last: default/b"},
		}},
		{name: "STALE devices do not hold back by default", stale: []string{"old"}, fleet: []string{"a", "b"}, steps: []step{
			{dev: "a", release: "N+1", want: map[string]rollout.State{"N+1": rollout.RollingOut}},
			{dev: "b", release: "N+1", want: map[string]rollout.State{"N+1": rollout.Complete}, reason: "not counted: 1 STALE (default/old)"},
		}},
		{name: "STALE devices hold back when the hub waits for them", waitStale: true, stale: []string{"old"}, fleet: []string{"a"}, steps: []step{
			{dev: "a", release: "N+1", want: map[string]rollout.State{"N+1": rollout.RollingOut}},
			{do: "restart", want: map[string]rollout.State{"N+1": rollout.RollingOut}},
			// The silent device comes back on N+1: TRUSTED, and the last.
			{dev: "old", release: "N+1", devWant: store.Trusted, want: map[string]rollout.State{"N+1": rollout.Complete}, reason: "all 2 attesting devices"},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			vs, err := policysigtest.New()
			if err != nil {
				t.Fatal(err)
			}
			clk := &testClock{t: time.Now().UTC()}
			path := filepath.Join(t.TempDir(), "hub.db")
			cfg := func(c *Config) { c.ReleaseWaitStale = tc.waitStale }
			s, stop := startReleaseHub(t, path, vs, clk, cfg)
			rolloutGroup(t, s, vs)
			base := newWireDevice(t, s, "base")
			base.measure("/usr/bin/ok", "ok")
			devs := map[string]*wireDevice{}
			join := func(id string) {
				d := twinDevice(t, s, base, id)
				d.enroll("edge")
				if ack := d.report("N"); ack.State != store.Trusted {
					t.Fatalf("%s on N: %s", id, ack.State)
				}
				devs[id] = d
			}
			// The silent devices attested two days ago, on N.
			clk.Add(-48 * time.Hour)
			for _, id := range tc.stale {
				join(id)
			}
			clk.Add(48 * time.Hour)
			for _, id := range tc.stale {
				waitState(t, s.Store(), "default/"+id, store.Stale, 30*time.Second)
			}
			for _, id := range tc.fleet {
				join(id)
			}
			if got := releaseStates(t, s)["N"]; got != rollout.Complete {
				t.Fatalf("the fleet runs N: N is %s", got)
			}
			for i, st := range tc.steps {
				before := len(hubTransitions(t, s, "N+1")) + len(hubTransitions(t, s, "N+2"))
				switch st.do {
				case "restart":
					stop()
					s, stop = startReleaseHub(t, path, vs, clk, cfg)
					for _, d := range devs {
						d.connect(s)
					}
				case "decommission":
					if err := s.Decommission("default/"+st.dev, "test"); err != nil {
						t.Fatal(err)
					}
				default:
					devs[st.dev].report(st.release)
				}
				got := releaseStates(t, s)
				for v, want := range st.want {
					if got[v] != want {
						t.Fatalf("step %d: %s is %s, want %s (all: %v)", i, v, got[v], want, got)
					}
				}
				if st.devWant != "" {
					if d := state(t, s, st.dev); d.State != st.devWant {
						t.Fatalf("step %d: %s is %s (%s), want %s", i, st.dev, d.State, d.Reason, st.devWant)
					}
				}
				if st.reason != "" {
					hs := hubTransitions(t, s, "N+1")
					if len(hs) == before {
						t.Fatalf("step %d: no transition by the hub", i)
					}
					if last := hs[len(hs)-1]; !strings.Contains(last.Reason, st.reason) {
						t.Fatalf("step %d: reason %q, want it to say %q", i, last.Reason, st.reason)
					}
				}
			}
			// Each automatic transition happened once, by the hub, and the
			// device it names has it among its events.
			seen := map[rollout.State]int{}
			for _, h := range hubTransitions(t, s, "N+1") {
				seen[h.To]++
				who := h.Reason[strings.LastIndex(h.Reason, "default/"):]
				if _, last, ok := strings.Cut(h.Reason, "(last: "); ok {
					who, _, _ = strings.Cut(last, ")")
				}
				evs, err := s.Store().Events(who, 1000)
				if err != nil {
					t.Fatal(err)
				}
				if !hasRelease(evs, "release N+1 "+string(h.From)+" → "+string(h.To)+" by hub") {
					t.Fatalf("%s has no event for N+1 → %s: %+v", who, h.To, evs)
				}
			}
			for st, n := range seen {
				if n != 1 {
					t.Fatalf("N+1 → %s recorded %d times", st, n)
				}
			}
			for _, v := range []string{"N+2", "N+3"} {
				if hs := hubTransitions(t, s, v); len(hs) > 0 {
					t.Fatalf("the hub moved %s: %+v", v, hs)
				}
			}
		})
	}
}

// TestAutoRolloutConcurrent: devices reporting N+1 at once (in different
// workers) move it approved → rolling-out → complete exactly once each;
// and racing transitions of one release, one wins and the rest change
// nothing.
func TestAutoRolloutConcurrent(t *testing.T) {
	s, vs, _ := releaseHub(t, time.Hour)
	rolloutGroup(t, s, vs)
	base := newWireDevice(t, s, "base")
	base.measure("/usr/bin/ok", "ok")
	var fleet []*wireDevice
	for _, id := range []string{"c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8"} {
		d := twinDevice(t, s, base, id)
		d.enroll("edge")
		d.report("N")
		fleet = append(fleet, d)
	}
	// Quotes are made one at a time (one simulated TPM); the records are
	// published together.
	raws := make([][]byte, len(fleet))
	for i, d := range fleet {
		raws[i] = relRecord(d, "boot-1", "N+1", false)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(fleet))
	for i, d := range fleet {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := d.c.Publish(protocol.UpTopic("default", d.id, protocol.KindEvidence), 1, false, raws[i])
			tok.Wait()
			errs <- tok.Error()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for i, d := range fleet {
		var a protocol.Ack
		if err := protocol.Unmarshal(d.expect(protocol.KindAck), &a); err != nil || a.Rejected || a.State != store.Trusted {
			t.Fatalf("%s: %+v %v", d.id, a, err)
		}
		d.acceptRaw(raws[i], &a)
	}
	r, err := s.ReleaseOf("edge", "N+1")
	if err != nil {
		t.Fatal(err)
	}
	var path []string
	for _, h := range r.History {
		path = append(path, string(h.To)+" by "+h.By)
	}
	if got := strings.Join(path, ", "); got != "draft by release-ci, approved by release-owner, rolling-out by hub, complete by hub" {
		t.Fatalf("history: %s", got)
	}

	// Racing transitions of one release (two workers, or a worker and an
	// operator): exactly one moves it.
	signedRelease(t, s, vs, "edge", "N+4", releasePolicy(t, map[string]string{"/usr/bin/ok": "ok"}), "release@example.com")
	if _, err := s.ApproveRelease("edge", "N+4", "release-owner", ""); err != nil {
		t.Fatal(err)
	}
	var moved sync.WaitGroup
	wins := make(chan bool, 8)
	for range 8 {
		moved.Add(1)
		go func() {
			defer moved.Done()
			ok, err := s.autoTransition("edge", "N+4", rollout.Approved, rollout.RollingOut, "race")
			if err != nil {
				t.Error(err)
			}
			wins <- ok
		}()
	}
	moved.Wait()
	close(wins)
	n := 0
	for ok := range wins {
		if ok {
			n++
		}
	}
	if hs := hubTransitions(t, s, "N+4"); n != 1 || len(hs) != 1 {
		t.Fatalf("%d racing transitions won, history %+v", n, hs)
	}
	if got := releaseStates(t, s)["N+4"]; got != rollout.RollingOut {
		t.Fatalf("N+4 is %s", got)
	}
}

// BenchmarkNoteRollout is the cost noteRollout adds to every device write:
// for a group without releases, and for one device of a 10,000-device
// group whose release N+1 is rolling out (the tally built, nothing to
// move). go test -run '^$' -bench NoteRollout ./hub/server
func BenchmarkNoteRollout(b *testing.B) {
	vs, err := policysigtest.New()
	if err != nil {
		b.Fatal(err)
	}
	s, _ := startReleaseHub(b, filepath.Join(b.TempDir(), "hub.db"), vs, &testClock{t: time.Now().UTC()}, nil)
	rolloutGroup(b, s, vs)
	if _, err := s.autoTransition("edge", "N+1", rollout.Approved, rollout.RollingOut, "bench"); err != nil {
		b.Fatal(err)
	}
	devs := make([]store.Device, 10000)
	for i := range devs {
		devs[i] = store.Device{Key: "default/d" + strconv.Itoa(i), Group: "edge", State: store.Trusted, Release: "N"}
		s.noteRollout(&devs[i])
	}
	plain := store.Device{Key: "default/p", Group: "plain", State: store.Trusted, Release: "1.0"}
	b.Run("group without releases", func(b *testing.B) {
		for b.Loop() {
			s.noteRollout(&plain)
		}
	})
	b.Run("rolling-out group of 10k", func(b *testing.B) {
		i := 0
		for b.Loop() {
			s.noteRollout(&devs[i%len(devs)])
			i++
		}
	})
	if got := releaseStates(b, s)["N+1"]; got != rollout.RollingOut {
		b.Fatalf("N+1 is %s", got)
	}
}
