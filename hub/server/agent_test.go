package server

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/ratatouille/rat/audit"
	"github.com/ratatouille/rat/device/agent"
	"github.com/ratatouille/rat/device/imasim"
	"github.com/ratatouille/rat/device/imasrc"
	"github.com/ratatouille/rat/device/outbox"
	"github.com/ratatouille/rat/device/tpm"
	"github.com/ratatouille/rat/evidence/credential"
	"github.com/ratatouille/rat/evidence/failure"
	"github.com/ratatouille/rat/evidence/ima"
	"github.com/ratatouille/rat/evidence/protocol"
	"github.com/ratatouille/rat/hub/export"
	"github.com/ratatouille/rat/hub/store"
	"github.com/ratatouille/rat/hub/verifier"
)

func waitState(t *testing.T, st store.Store, key, want string, within time.Duration) *store.Device {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		d, err := st.Device(key)
		if err == nil && d.State == want {
			return d
		}
		if time.Now().After(deadline) {
			if d != nil {
				t.Fatalf("%s is %s (%s), want %s", key, d.State, d.Reason, want)
			}
			t.Fatalf("%s: %v, want %s", key, err, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAgentLoop runs the real agent (on the TPM simulator, with simulated
// IMA) against the hub: enroll with a baseline, TRUSTED; a file outside the
// policy → UNTRUSTED naming it; new policy → TRUSTED; then the hub and its
// embedded broker go away while the device keeps measuring and
// heartbeating into a small outbox (thinned), and come back on the same
// store: every IMA entry arrives, in order, exactly once.
func TestAgentLoop(t *testing.T) {
	dir := t.TempDir()
	st, err := store.OpenBolt(filepath.Join(dir, "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	key, err := export.LoadOrCreateKey(filepath.Join(dir, "hub-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Store: st, Verifier: verifier.Config{AllowTOFUUnsafe: true}, EmbeddedAddr: "127.0.0.1:0",
		AllowUnsignedPoliciesUnsafe: true, StaleAfter: time.Hour, Log: quiet, Key: key}
	s, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	url := s.BrokerURL()
	cfg.EmbeddedAddr = url[len("tcp://"):]

	sb := newSimBoot(t, dir, outbox.WithMaxRecords(5))
	tp, ms, logPath, ob := sb.tp, sb.ima, sb.log, sb.ob
	approved := filepath.Join(dir, "approved")
	if err := os.WriteFile(approved, []byte("#!/bin/sh\necho fine\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := ms.MeasureFile(approved); err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{DeviceID: "edge", Fleet: "default", Group: "g", Broker: url, TPM: tp,
		IMA: imasrc.NewFile(logPath), Outbox: ob, BootID: func() (string, error) { return "boot-1", nil },
		Baseline: true, Poll: 20 * time.Millisecond, Heartbeat: 50 * time.Millisecond, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()

	dk := "default/edge"
	waitState(t, st, dk, store.Trusted, 10*time.Second)
	p, err := st.ActivePolicy("g")
	if err != nil || p.Name != "Baseline::g" {
		t.Fatalf("baseline policy: %v %+v", err, p)
	}

	evil := filepath.Join(dir, "evil")
	if err := os.WriteFile(evil, []byte("#!/bin/sh\nrm -rf /\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := ms.MeasureFile(evil); err != nil {
		t.Fatal(err)
	}
	d := waitState(t, st, dk, store.Untrusted, 10*time.Second)
	if len(d.Failures) == 0 || d.Failures[0].Fields["path"] != evil {
		t.Fatalf("failure does not name %s: %+v", evil, d.Failures)
	}

	// The operator approves: a policy from the device's own log.
	entries, err := ima.ParseBinary(mustOpen(t, logPath))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetPolicy("g", policyFromEntries(t, entries), nil, "test", ""); err != nil {
		t.Fatal(err)
	}
	waitState(t, st, dk, store.Trusted, 10*time.Second)

	// Offline: the hub and its broker stop; the device keeps running
	// approved software and heartbeating.
	s.Close()
	for i := 0; i < 20; i++ {
		if _, err := ms.MeasureFile(approved); err != nil {
			t.Fatal(err)
		}
		time.Sleep(15 * time.Millisecond)
	}
	time.Sleep(400 * time.Millisecond) // heartbeats pile up past the outbox bound
	if n, _ := ob.Len(); n < 5 {
		t.Fatalf("outbox holds %d records while offline", n)
	}
	s, err = Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	entries, _ = ima.ParseBinary(mustOpen(t, logPath))
	deadline := time.Now().Add(15 * time.Second)
	for {
		d, _ = st.Device(dk)
		if d.IMACount == uint64(len(entries)) {
			if n, _ := ob.Len(); n <= 1 {
				break
			}
		}
		if time.Now().After(deadline) {
			n, _ := ob.Len()
			t.Fatalf("hub has %d of %d entries, outbox %d", d.IMACount, len(entries), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d.State != store.Trusted {
		t.Fatalf("state after reconnect: %s (%s)", d.State, d.Reason)
	}
	// The stored chain: records contiguous except where thinning says so,
	// and the IMA ranges contiguous from 0.
	var prevSeq, next uint64
	thinned := uint64(0)
	err = st.Evidence(dk, 0, ^uint64(0), func(seq uint64, raw []byte) error {
		var e protocol.Evidence
		if err := protocol.Unmarshal(raw, &e); err != nil {
			return err
		}
		if prevSeq != 0 && seq != prevSeq+1+e.Thinned {
			t.Errorf("record %d follows %d with thinned %d", seq, prevSeq, e.Thinned)
		}
		thinned += e.Thinned
		if len(e.IMA) > 0 {
			if e.IMAStart != next {
				t.Errorf("record %d: IMA from %d, want %d", seq, e.IMAStart, next)
			}
			es, _ := ima.ParseBinary(mustOpenBytes(e.IMA))
			next += uint64(len(es))
		}
		prevSeq = seq
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if next != uint64(len(entries)) {
		t.Fatalf("stored IMA entries %d, log has %d", next, len(entries))
	}
	// The hub's copy of the boot's log (what init-baseline --device reads)
	// is the device's log, entry for entry.
	bl, err := s.BootLog(dk)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bl, ima.MarshalBinary(entries)) {
		t.Fatal("the hub's boot log differs from the device's")
	}
	if thinned == 0 || d.Thinned != thinned {
		t.Fatalf("thinning not recorded: stored %d, device record %d", thinned, d.Thinned)
	}

	// The auditor replays the exported span without trusting the hub:
	// the violation inside it is found and named, under the policy that
	// was in force when the file ran.
	var buf bytes.Buffer
	if err := export.Write(&buf, st, dk, export.Options{Hub: "test-hub", Key: key}); err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(bytes.NewReader(buf.Bytes()), audit.WithHubKey(key.Public()), audit.WithoutTlogUnsafe())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Verdict != audit.Untrusted {
		var out bytes.Buffer
		rep.WriteText(&out)
		t.Fatalf("audit verdict %s, want UNTRUSTED:\n%s", rep.Verdict, out.String())
	}
	named := false
	for _, f := range rep.Failures {
		if f.ID == failure.IMANotInAllowlist && strings.Contains(f.Context, evil) {
			named = true
		}
	}
	if !named {
		var out bytes.Buffer
		rep.WriteText(&out)
		t.Fatalf("the audit does not name %s:\n%s", evil, out.String())
	}
	if os.Getenv("RAT_SHOW_AUDIT") != "" {
		rep.WriteText(os.Stderr)
	}
	// A span after the policy change, in a boot without the violation,
	// is not tested here: the boot includes the file's execution.
	_ = sha256.Sum256
}

// simBoot is a simulated device for agent tests: the go-tpm-tools TPM
// simulator, a measurement list at dir/ima.bin for which imasim extends
// PCR 10 as the kernel would (boot_aggregate already logged), and an outbox
// at dir/outbox.db; all closed when the test ends.
type simBoot struct {
	tp  *tpm.TPM
	ima *imasim.Simulator
	log string
	ob  *outbox.Outbox
}

func newSimBoot(t *testing.T, dir string, opts ...outbox.Option) *simBoot {
	t.Helper()
	sim, err := simulator.Get()
	if err != nil {
		t.Fatal(err)
	}
	b := &simBoot{tp: tpm.New(transport.FromReadWriteCloser(sim)), log: filepath.Join(dir, "ima.bin")}
	t.Cleanup(func() { b.tp.Close() })
	if b.ima, err = imasim.Open(b.tp, b.log); err != nil {
		t.Fatal(err)
	}
	if b.ob, err = outbox.Open(filepath.Join(dir, "outbox.db"), opts...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.ob.Close() })
	return b
}

func mustOpenBytes(b []byte) io.Reader { return &byteReader{b: b} }

type byteReader struct{ b []byte }

func (r *byteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// TestOfflineExport: an air-gapped device attests with no hub, then exports
// its outbox; the auditor verifies the TPM evidence and the chain, says the
// nonces were self-issued, and cannot say TRUSTED without a policy.
func TestOfflineExport(t *testing.T) {
	dir := t.TempDir()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	sb := newSimBoot(t, dir)
	tp, ms, logPath, ob := sb.tp, sb.ima, sb.log, sb.ob
	a, err := agent.New(agent.Config{DeviceID: "airgap", Fleet: "default", Broker: "offline", Offline: true, TPM: tp,
		IMA: imasrc.NewFile(logPath), Outbox: ob, BootID: func() (string, error) { return "boot-1", nil },
		Poll: 10 * time.Millisecond, Heartbeat: 30 * time.Millisecond, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	for i := 0; i < 5; i++ {
		if _, err := ms.Measure(bytes.Repeat([]byte{byte(i)}, 32), fmt.Sprintf("/usr/bin/tool%d", i)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(40 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	n, err := a.Export(&buf)
	if err != nil || n < 2 {
		t.Fatalf("export: %d records, %v", n, err)
	}
	rep, err := audit.Verify(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rep.WriteText(&out)
	if rep.Verdict == audit.Trusted {
		t.Fatalf("an offline bundle without a policy was judged TRUSTED:\n%s", out.String())
	}
	for _, name := range []string{"quote-signatures", "claims-binding", "chain-continuity", "ima-replay"} {
		c, ok := rep.Check(name)
		if !ok || c.Result != "pass" {
			t.Errorf("check %s: %+v\n%s", name, c, out.String())
		}
	}
	if !rep.SelfIssued {
		t.Errorf("the report does not say the nonces were self-issued")
	}
}

// TestAgentRSAAK: the agent's RSA-2048 AK option enrolls and attests like
// the default ECC one (the verifier takes either key type).
func TestAgentRSAAK(t *testing.T) {
	dir := t.TempDir()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.OpenBolt(filepath.Join(dir, "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, err := Start(context.Background(), Config{Store: st, Verifier: verifier.Config{AllowTOFUUnsafe: true}, EmbeddedAddr: "127.0.0.1:0",
		AllowUnsignedPoliciesUnsafe: true, StaleAfter: time.Hour, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sb := newSimBoot(t, dir)
	tp, logPath, ob := sb.tp, sb.log, sb.ob
	a, err := agent.New(agent.Config{DeviceID: "rsa", Fleet: "default", Group: "g", Broker: s.BrokerURL(), TPM: tp, AK: tpm.AKRSA2048,
		IMA: imasrc.NewFile(logPath), Outbox: ob, BootID: func() (string, error) { return "b", nil }, Baseline: true,
		Poll: 20 * time.Millisecond, Heartbeat: 50 * time.Millisecond, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	d := waitState(t, st, "default/rsa", store.Trusted, 10*time.Second)
	pub, err := credential.PublicKey(d.AKPublic)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := pub.(*rsa.PublicKey); !ok {
		t.Fatalf("AK is %T, want RSA", pub)
	}
	// Heartbeats keep verifying.
	deadline := time.Now().Add(10 * time.Second)
	for d.Quotes < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		d, _ = st.Device("default/rsa")
	}
	if d.Quotes < 3 || d.State != store.Trusted {
		t.Fatalf("quotes %d, state %s (%s)", d.Quotes, d.State, d.Reason)
	}
}

// TestIngest: a device loses its hub, keeps attesting into its outbox,
// runs a file outside the policy, and its outbox is exported and carried
// to the hub: the hub judges the records as if they had arrived live
// (UNTRUSTED naming the file). When the device is back online its
// republished records are recognised as duplicates.
func TestIngest(t *testing.T) {
	dir := t.TempDir()
	st, err := store.OpenBolt(filepath.Join(dir, "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := Config{Store: st, Verifier: verifier.Config{AllowTOFUUnsafe: true}, EmbeddedAddr: "127.0.0.1:0",
		AllowUnsignedPoliciesUnsafe: true, StaleAfter: time.Hour, Log: quiet}
	s, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	url := s.BrokerURL()
	cfg.EmbeddedAddr = url[len("tcp://"):]
	sb := newSimBoot(t, dir)
	tp, ms, logPath, ob := sb.tp, sb.ima, sb.log, sb.ob
	newAgent := func() *agent.Agent {
		a, err := agent.New(agent.Config{DeviceID: "field", Fleet: "default", Group: "g", Broker: url, TPM: tp,
			IMA: imasrc.NewFile(logPath), Outbox: ob, BootID: func() (string, error) { return "boot-1", nil }, Baseline: true,
			Poll: 20 * time.Millisecond, Heartbeat: 50 * time.Millisecond, Log: quiet})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	run := func(a *agent.Agent) func() {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		return func() { cancel(); <-done }
	}
	a := newAgent()
	stop := run(a)
	const key = "default/field"
	waitState(t, st, key, store.Trusted, 10*time.Second)

	// The hub goes away; the device keeps attesting and runs a miner.
	s.Close()
	time.Sleep(150 * time.Millisecond)
	if _, err := ms.Measure(bytes.Repeat([]byte{3}, 32), "/opt/miner"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	stop()
	var buf bytes.Buffer
	n, err := a.Export(&buf)
	if err != nil || n == 0 {
		t.Fatalf("export: %d, %v", n, err)
	}
	a.Close()

	// The bundle reaches the hub by hand.
	s, err = Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res, err := s.Ingest("default", "field", bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted == 0 || res.Rejected != 0 || res.State != store.Untrusted {
		t.Fatalf("ingest: %+v", res)
	}
	d, _ := st.Device(key)
	if !strings.Contains(d.Reason, "/opt/miner") {
		t.Fatalf("reason %q does not name the file", d.Reason)
	}
	// The same bundle again changes nothing.
	again, err := s.Ingest("default", "field", bytes.NewReader(buf.Bytes()))
	if err != nil || again.Accepted != 0 || again.Duplicates != res.Records {
		t.Fatalf("second ingest: %+v %v", again, err)
	}
	// A bundle of another device is refused.
	if _, err := s.Ingest("default", "someone-else", bytes.NewReader(buf.Bytes())); err == nil {
		t.Fatal("bundle ingested for a device that is not enrolled")
	}
	// Back online: the republished records are duplicates and the outbox drains.
	a = newAgent()
	defer a.Close()
	stop = run(a)
	defer stop()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, _ := ob.Len()
		if n <= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("outbox still holds %d records", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
