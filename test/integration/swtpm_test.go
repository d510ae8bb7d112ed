package integration

import (
	"crypto"
	"crypto/sha256"
	"fmt"
	"github.com/ratatouille/rat/test/harness"
	"os"
	"testing"
	"time"

	"github.com/ratatouille/rat/device/tpm"
	"github.com/ratatouille/rat/evidence/ima"
)

// startSwtpm runs a real swtpm on a free loopback port pair (command port,
// platform port = command port + 1) and returns its tcp:// address.
func startSwtpm(t *testing.T, logDir string) string {
	t.Helper()
	swtpm := harness.RequireTool(t, "swtpm")
	state := t.TempDir()
	for attempt := 0; attempt < 5; attempt++ {
		port := harness.FreePort(t)
		if port >= 65535 {
			continue
		}
		p := startBin(t, logDir, "swtpm", nil, swtpm, "socket", "--tpm2", "--tpmstate", "dir="+state,
			"--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port),
			"--ctrl", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port+1),
			"--flags", "not-need-init,startup-clear")
		// Probe the platform port only: swtpm serves one client at a time
		// on the command port, and a probe there would hold it.
		if p.WaitListening(fmt.Sprintf("127.0.0.1:%d", port+1), 10*time.Second) {
			return fmt.Sprintf("tcp://127.0.0.1:%d", port)
		}
		p.Kill(t)
	}
	t.Fatal("could not start swtpm")
	return ""
}

// kernelIMA plays the kernel's IMA on a swtpm for rat-agent: it appends
// ima-ng entries to a binary_runtime_measurements file and extends PCR 10
// with each entry's sha256 template digest, in the kernel's order (list
// first, then PCR). swtpm serves one client at a time, so it connects only
// while the agent is not running.
type kernelIMA struct {
	tpm, path string
	entries   int
}

// measure logs files (their sha256) as executed; the first call of a boot
// logs boot_aggregate from PCRs 0–9 first, as the kernel does.
func (k *kernelIMA) measure(t *testing.T, files ...string) {
	t.Helper()
	tp, err := tpm.Open(k.tpm)
	if err != nil {
		t.Fatalf("kernel IMA: %v", err)
	}
	defer tp.Close()
	var add []ima.Entry
	if k.entries == 0 {
		pcrs, err := tp.ReadPCRs([]int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
		if err != nil {
			t.Fatal(err)
		}
		vals := make([][]byte, 10)
		for i := range vals {
			vals[i] = pcrs[i]
		}
		agg, err := ima.BootAggregate(vals, crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		e, err := ima.NewNgEntry(10, "sha256", agg, "boot_aggregate")
		if err != nil {
			t.Fatal(err)
		}
		add = append(add, e)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		d := sha256.Sum256(b)
		e, err := ima.NewNgEntry(10, "sha256", d[:], f)
		if err != nil {
			t.Fatal(err)
		}
		add = append(add, e)
	}
	lf, err := os.OpenFile(k.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	for _, e := range add {
		if _, err := lf.Write(ima.MarshalBinary([]ima.Entry{e})); err != nil {
			t.Fatal(err)
		}
		d := sha256.Sum256(e.TemplateData)
		if err := tp.Extend(10, d[:]); err != nil {
			t.Fatal(err)
		}
		k.entries++
	}
}
