package integration

import (
	"github.com/ratatouille/rat/test/harness"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ratatouille/rat/device/imasrc"
)

// devsim starts rat-devsim (the real agent on the TPM simulator, with a
// simulated IMA) enrolled with a baseline of the files in rootfs.
func startDevsim(t *testing.T, logs, id, group, brokerURL, passFile, rootfs, state string, heartbeat time.Duration) (*harness.Proc, *spool) {
	t.Helper()
	sp := &spool{path: filepath.Join(state, "exec-spool")}
	sp.touch(t)
	p := startBin(t, logs, "rat-devsim-"+id, nil, bin.devsim, "--hub", brokerURL, "--device-id", id, "--group", group,
		"--state", state, "--measure", rootfs, "--exec-spool", sp.path, "--baseline", "--mqtt-password-file", passFile,
		"--heartbeat", heartbeat.String(), "--poll", "100ms")
	return p, sp
}

// TestFaultsBrokerHubOutage attests continuously while the broker is
// SIGKILLed and restarted, the hub is SIGKILLed and restarted on the same
// store, and the broker is stopped for a while (the device offline, its
// outbox growing). Afterwards the hub must hold every record once and every
// IMA entry once, in order, still judge the device TRUSTED, and still catch
// an unapproved file.
func TestFaultsBrokerHubOutage(t *testing.T) {
	t.Parallel() // each test has its own processes on its own ports
	logs := t.TempDir()
	const id, group = "sim-faults", "faults"
	m := startMosquitto(t, logs, id)
	work := t.TempDir()
	rootfs := filepath.Join(work, "rootfs")
	approved := writeFiles(t, rootfs, "init", "sshd", "app", "cron")
	h := startHub(t, logs, filepath.Join(work, "hub"), m.url(), m.passwordFile(t, "rat-hub"),
		"--ek-tofu-unsafe", "--allow-unsigned-policies-unsafe", "--stale-after", "5m")
	state := filepath.Join(work, "device")
	dev, sp := startDevsim(t, logs, id, group, m.url(), m.passwordFile(t, id), rootfs, state, time.Second)
	devLog := imasrc.NewFile(filepath.Join(state, "binary_runtime_measurements"))
	bootEntries := uint64(1 + len(approved)) // boot_aggregate + the measured files

	h.waitState(t, id, "TRUSTED", 30*time.Second)
	h.waitIMA(t, id, bootEntries, 10*time.Second)

	// Approved files keep executing through every fault below.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(150 * time.Millisecond):
			}
			sp.exec(t, approved[i%len(approved)])
		}
	}()
	stopExec := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}
	t.Cleanup(stopExec)

	// progress waits until the hub has verified every entry the device had
	// logged when the fault ended: what happened during it arrived.
	progress := func(what string) {
		t.Helper()
		n, err := devLog.Count()
		if err != nil {
			t.Fatal(err)
		}
		d := h.waitIMA(t, id, n, 30*time.Second)
		t.Logf("%s: hub verified %d IMA entries (device had %d when it ended), state %s", what, d.IMAEntries, n, d.State)
		if d.State != "TRUSTED" {
			t.Fatalf("%s: device %s: %s", what, d.State, d.Reason)
		}
	}
	time.Sleep(time.Second)
	progress("steady state")

	m.proc.Kill(t)
	time.Sleep(500 * time.Millisecond)
	m.restart(t)
	progress("broker SIGKILLed and restarted")

	h.proc.Kill(t)
	time.Sleep(time.Second)
	h.start(t)
	progress("hub SIGKILLed and restarted")

	m.proc.Stop(t)
	offline, err := devLog.Count()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // heartbeats (1 s) and IMA records queue in the outbox
	grown, err := devLog.Count()
	if err != nil {
		t.Fatal(err)
	}
	if grown <= offline {
		t.Fatalf("the device logged nothing while offline (%d entries before, %d after)", offline, grown)
	}
	m.restart(t)
	progress("broker stopped for 3 s and restarted")

	// Quiesce: the spool is fully measured, and the hub has all of it.
	stopExec()
	want := bootEntries + uint64(sp.count())
	harness.Eventually(t, 10*time.Second, "the device measures every spooled exec", func() (bool, string) {
		n, err := devLog.Count()
		return err == nil && n == want, ""
	})
	d := h.waitIMA(t, id, want, 30*time.Second)
	if d.IMAEntries != want {
		t.Fatalf("hub verified %d IMA entries, the device logged %d", d.IMAEntries, want)
	}
	if d.State != "TRUSTED" {
		t.Fatalf("after the faults the device is %s: %s", d.State, d.Reason)
	}
	checkEvidenceChain(t, h.evidence(t, id), want)
	t.Logf("%d IMA entries in %d records, each exactly once", want, len(h.evidence(t, id)))

	// The verdicts still work.
	evil := writeFiles(t, filepath.Join(work, "tmp"), "miner")[0]
	sp.exec(t, evil)
	d = h.waitState(t, id, "UNTRUSTED", 10*time.Second)
	if !strings.Contains(d.Reason, evil) || !failuresNaming(d.Failures, notInAllowlist, evil) {
		t.Errorf("UNTRUSTED for %q (failures %+v), want %s naming %s", d.Reason, d.Failures, notInAllowlist, evil)
	}
	if dev.Exited() {
		t.Fatalf("rat-devsim exited:\n%s", harness.Tail(dev.Log, 20))
	}
}
