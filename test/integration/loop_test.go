package integration

import (
	"github.com/ratatouille/rat/test/harness"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const notInAllowlist = "ima.validation.ima-ng.not_in_allowlist"

// TestLoopSwtpmAgentMosquitto runs the product's main loop on real parts:
// rat-agent on a swtpm, talking to rat-hub through a real Mosquitto with a
// password file and the documented ACL. Enrollment with --baseline makes
// the group's policy from the device's log (TRUSTED); the agent is SIGKILLed,
// an unapproved file runs, and the restarted agent's next record turns the
// device UNTRUSTED naming the file; a policy made from the device's log
// brings it back to TRUSTED. Throughout, the hub's stored chain has every
// record once and every IMA entry once.
func TestLoopSwtpmAgentMosquitto(t *testing.T) {
	t.Parallel() // each test has its own processes on its own ports
	logs := t.TempDir()
	const id, group = "swtpm-1", "loop"
	m := startMosquitto(t, logs, id)
	tpmAddr := startSwtpm(t, logs)
	work := t.TempDir()

	// The device "boots": boot_aggregate and its software run.
	k := &kernelIMA{tpm: tpmAddr, path: filepath.Join(work, "binary_runtime_measurements")}
	approved := writeFiles(t, filepath.Join(work, "rootfs"), "init", "sshd", "app")
	k.measure(t, approved...)

	h := startHub(t, logs, filepath.Join(work, "hub"), m.url(), m.passwordFile(t, "rat-hub"),
		"--ek-tofu-unsafe", "--allow-unsigned-policies-unsafe", "--stale-after", "5m")
	agentArgs := []string{"run", "--hub", m.url(), "--device-id", id, "--group", group, "--tpm", tpmAddr,
		"--ima-file", k.path, "--state", filepath.Join(work, "agent"), "--event-log", filepath.Join(work, "no-event-log"),
		"--release-file", filepath.Join(work, "no-os-release"), "--mqtt-password-file", m.passwordFile(t, id),
		"--poll", "100ms", "--heartbeat", "2s", "--baseline"}
	agent := startBin(t, logs, "rat-agent", nil, bin.agent, agentArgs...)

	h.waitState(t, id, "TRUSTED", 30*time.Second)
	d := h.waitIMA(t, id, uint64(k.entries), 10*time.Second)
	if d.IMAEntries != uint64(k.entries) {
		t.Fatalf("hub verified %d IMA entries, the log has %d", d.IMAEntries, k.entries)
	}

	// SIGKILL the agent mid-stream; an unapproved file runs meanwhile.
	agent.Kill(t)
	evil := writeFiles(t, filepath.Join(work, "tmp"), "dropper")[0]
	k.measure(t, evil)
	agent = startBin(t, logs, "rat-agent", nil, bin.agent, agentArgs...)

	d = h.waitState(t, id, "UNTRUSTED", 20*time.Second)
	if !strings.Contains(d.Reason, evil) || !strings.Contains(d.Reason, notInAllowlist) {
		t.Errorf("UNTRUSTED reason %q does not name %s with %s", d.Reason, evil, notInAllowlist)
	}
	if !failuresNaming(d.Failures, notInAllowlist, evil) {
		t.Errorf("failures %+v do not include %s for %s", d.Failures, notInAllowlist, evil)
	}
	for _, f := range d.Failures {
		if f.Fields["path"] != evil {
			t.Errorf("failure %s names %q: only %s is unapproved", f.ID, f.Fields["path"], evil)
		}
	}

	// The operator approves it: policy v2 from the device's own log,
	// through the operator CLI.
	env := append(os.Environ(), "RAT_HUB="+h.URL, "RAT_TOKEN_FILE="+filepath.Join(h.data, "operator.token"))
	policy := filepath.Join(work, "policy-v2.json")
	for _, args := range [][]string{
		{"policy", "create", "--ima-log", k.path, "-o", policy},
		{"policy", "push", "--group", group, policy},
	} {
		cmd := exec.Command(bin.rat, args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("rat %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	h.waitState(t, id, "TRUSTED", 10*time.Second)

	// Every record once, in order; every IMA entry once.
	d = h.waitIMA(t, id, uint64(k.entries), 10*time.Second)
	if d.IMAEntries != uint64(k.entries) {
		t.Fatalf("hub verified %d IMA entries, the log has %d", d.IMAEntries, k.entries)
	}
	checkEvidenceChain(t, h.evidence(t, id), uint64(k.entries))
	if agent.Exited() {
		t.Fatalf("rat-agent exited:\n%s", harness.Tail(agent.Log, 20))
	}
}
