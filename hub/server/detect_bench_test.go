package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/ratatouille/rat/device/agent"
	"github.com/ratatouille/rat/device/imasim"
	"github.com/ratatouille/rat/device/imasrc"
	"github.com/ratatouille/rat/device/outbox"
	"github.com/ratatouille/rat/device/tpm"
	"github.com/ratatouille/rat/evidence/ima"
	"github.com/ratatouille/rat/evidence/runtimepolicy"
	"github.com/ratatouille/rat/hub/store"
	"github.com/ratatouille/rat/hub/verifier"
)

// BenchmarkDetection measures detection latency: from an unapproved file's
// execution on the device (imasim logs it and extends PCR 10, as the
// kernel's IMA does) to the hub having stored the device as UNTRUSTED
// (Config.OnUntrusted fires after the store write). The agent runs with its
// default settings (poll 250 ms, heartbeat 10 s) on the TPM simulator. Each
// trial (b.N of them; make bench uses 1000) starts at a random phase of the
// agent's poll, then an operator policy that approves the file makes the
// device TRUSTED again for the next trial.
func BenchmarkDetection(b *testing.B) {
	dir := b.TempDir()
	st, err := store.OpenBolt(filepath.Join(dir, "hub.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	untrusted := make(chan time.Time, 4)
	s, err := Start(context.Background(), Config{Store: st, Verifier: verifier.Config{AllowTOFUUnsafe: true}, EmbeddedAddr: "127.0.0.1:0",
		AllowUnsignedPoliciesUnsafe: true, StaleAfter: time.Hour, Log: quiet,
		OnUntrusted: func(string) { untrusted <- time.Now() }})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	sim, err := simulator.Get()
	if err != nil {
		b.Fatal(err)
	}
	tp := tpm.New(transport.FromReadWriteCloser(sim))
	defer tp.Close()
	logPath := filepath.Join(dir, "ima.bin")
	ms, err := imasim.Open(tp, logPath)
	if err != nil {
		b.Fatal(err)
	}
	approve := func() {
		b.Helper()
		raw, err := os.ReadFile(logPath)
		if err != nil {
			b.Fatal(err)
		}
		entries, err := ima.ParseBinary(mustOpenBytes(raw))
		if err != nil {
			b.Fatal(err)
		}
		p, err := runtimepolicy.FromEntries(entries)
		if err != nil {
			b.Fatal(err)
		}
		doc, err := p.Marshal()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.SetPolicy("g", doc, nil, "bench", ""); err != nil {
			b.Fatal(err)
		}
	}
	approve()
	ob, err := outbox.Open(filepath.Join(dir, "outbox.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer ob.Close()
	a, err := agent.New(agent.Config{DeviceID: "edge", Fleet: "default", Group: "g", Broker: s.BrokerURL(), TPM: tp,
		IMA: imasrc.NewFile(logPath), Outbox: ob, BootID: func() (string, error) { return "boot-1", nil }, Log: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	const key = "default/edge"
	waitTrusted := func() {
		b.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			if d, err := st.Device(key); err == nil && d.State == store.Trusted {
				return
			}
			if time.Now().After(deadline) {
				b.Fatal("device not TRUSTED")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitTrusted()

	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		time.Sleep(time.Duration(rand.Int64N(int64(250 * time.Millisecond))))
		h := [32]byte{byte(i), byte(i >> 8), 0xee}
		t0 := time.Now()
		if _, err := ms.Measure(h[:], fmt.Sprintf("/usr/bin/unapproved-%d", i)); err != nil {
			b.Fatal(err)
		}
		select {
		case t1 := <-untrusted:
			lat = append(lat, t1.Sub(t0))
		case <-time.After(30 * time.Second):
			b.Fatalf("trial %d: not UNTRUSTED within 30 s", i)
		}
		approve()
		waitTrusted()
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(0, "ns/op")
}
