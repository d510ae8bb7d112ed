package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ratatouille/rat/audit"
	"github.com/ratatouille/rat/audit/policysig"
	"github.com/ratatouille/rat/device/agent"
	"github.com/ratatouille/rat/device/imasrc"
	"github.com/ratatouille/rat/evidence/ima"
	"github.com/ratatouille/rat/hub/export"
	"github.com/ratatouille/rat/hub/store"
	"github.com/ratatouille/rat/hub/verifier"
)

// TestBundleRoundTrip: a clean run — the real agent, a hub that takes only
// policies signed by the group's key, no violation — exported by the hub is
// TRUSTED for rat-audit's verifier with only the signer's key and the hub's
// key pinned (the simulator has no EK certificate or firmware log, and the
// test says so by waiving exactly those two checks). Without the signer's
// key the same bundle is not TRUSTED.
func TestBundleRoundTrip(t *testing.T) {
	dir := t.TempDir()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	opKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pubDER, _ := x509.MarshalPKIXPublicKey(&opKey.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	pv, err := policysig.New(nil, policysig.WithPublicKeyPEM(pubPEM), policysig.WithoutTlogUnsafe())
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenBolt(filepath.Join(dir, "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	hubKey, err := export.LoadOrCreateKey(filepath.Join(dir, "hub-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Start(context.Background(), Config{Store: st, Key: hubKey, Verifier: verifier.Config{AllowTOFUUnsafe: true},
		EmbeddedAddr: "127.0.0.1:0", StaleAfter: time.Hour, Log: quiet,
		PolicyCheck: func(_ string, doc, b []byte) (*PolicyMeta, error) {
			r, err := pv.Verify(doc, b)
			if err != nil {
				return nil, err
			}
			return &PolicyMeta{Signer: r.Signer()}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	sb := newSimBoot(t, dir)
	tp, ms, logPath, ob := sb.tp, sb.ima, sb.log, sb.ob
	tool := filepath.Join(dir, "tool")
	if err := os.WriteFile(tool, []byte("#!/bin/sh\necho ok\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := ms.MeasureFile(tool); err != nil {
		t.Fatal(err)
	}
	// The group's signed policy is in place before the device enrolls.
	entries, err := ima.ParseBinary(mustOpen(t, logPath))
	if err != nil {
		t.Fatal(err)
	}
	doc := policyFromEntries(t, entries)
	sig, err := policysig.SignWithKey(context.Background(), doc, opKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetPolicy("g", doc, nil, "test", ""); err == nil {
		t.Fatal("an unsigned policy was activated")
	}
	if _, err := s.SetPolicy("g", doc, sig, "test", ""); err != nil {
		t.Fatal(err)
	}

	a, err := agent.New(agent.Config{DeviceID: "clean", Fleet: "default", Group: "g", Broker: s.BrokerURL(), TPM: tp,
		IMA: imasrc.NewFile(logPath), Outbox: ob, BootID: func() (string, error) { return "boot-1", nil },
		Poll: 20 * time.Millisecond, Heartbeat: 40 * time.Millisecond, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitState(t, st, "default/clean", store.Trusted, 10*time.Second)
	for i := 0; i < 3; i++ { // the approved tool runs again, and heartbeats
		if _, err := ms.MeasureFile(tool); err != nil {
			t.Fatal(err)
		}
		time.Sleep(60 * time.Millisecond)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, _ := st.Device("default/clean")
		if d.Quotes >= 5 && d.IMACount == uint64(len(entries)+3) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hub has %d quotes, %d entries", d.Quotes, d.IMACount)
		}
		time.Sleep(20 * time.Millisecond)
	}
	opts := []audit.Option{audit.WithHubKey(hubKey.Public()), audit.WithPolicyKey(pubPEM), audit.WithoutTlogUnsafe(),
		audit.Waive("ek-certificate", "the TPM simulator has no EK certificate"),
		audit.Waive("event-log-replay", "the TPM simulator has no firmware")}
	// Each record form is judged the same; compact records are the
	// smallest (the device's entries are all in the policy).
	size := map[string]int{}
	var buf bytes.Buffer
	for _, form := range []string{"full", "delta", "compact"} {
		buf.Reset()
		if err := export.Write(&buf, st, "default/clean", export.Options{Hub: "test", Key: hubKey, Records: form}); err != nil {
			t.Fatal(err)
		}
		size[form] = buf.Len()
		rep, err := audit.Verify(bytes.NewReader(buf.Bytes()), opts...)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Verdict != audit.Trusted {
			var out bytes.Buffer
			rep.WriteText(&out)
			t.Fatalf("clean exported span, %s records, is %s:\n%s", form, rep.Verdict, out.String())
		}
	}
	if !(size["compact"] < size["delta"] && size["delta"] < size["full"]) {
		t.Errorf("bundle sizes %v: want compact < delta < full", size)
	}
	if err := export.Write(&buf, st, "default/clean", export.Options{Records: "zip"}); err == nil {
		t.Error("an unknown record form was accepted")
	}
	// Without the signer's key the policy is not checked: not TRUSTED.
	rep, err := audit.Verify(bytes.NewReader(buf.Bytes()), opts[0], opts[3], opts[4])
	if err != nil {
		t.Fatal(err)
	}
	if rep.Verdict == audit.Trusted {
		t.Fatal("TRUSTED without checking the policy signature")
	}
}
