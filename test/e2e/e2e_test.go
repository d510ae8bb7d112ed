//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/ratatouille/rat/test/harness"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const (
	notInAllowlist = "ima.validation.ima-ng.not_in_allowlist"
	dropper        = "/root/dropper"
	// bootMeasurements is what ima_policy=tcb measures of a boot before
	// the dropper: boot_aggregate, /init, /bin/busybox, the 6 virtio
	// modules, /etc/os-release (read as root) and /bin/rat-agent.
	bootMeasurements = 11
	// Upper bounds for a loaded 2-core machine running qemu without KVM;
	// nothing asserts speed.
	bootTimeout    = 4 * time.Minute
	verdictTimeout = 2 * time.Minute
)

// TestRealKernel boots one device twice on real parts — a Debian kernel
// with ima_policy=tcb, swtpm with EK certificates from the test's CA, the
// static rat-agent over virtio-serial, the rat-hub on the host:
//
//  1. SeaBIOS: the agent enrolls with --baseline; the hub verifies the EK
//     chain to the test's CA (no TOFU), the SeaBIOS event log against the
//     quoted PCRs 0-7 and the kernel's IMA log against PCR 10, and the device
//     is TRUSTED. The hub restarts: qemu's client chardev reconnects and the
//     agent reopens its virtio-serial port and carries on. The guest then
//     runs a program written after enrollment:
//     the device becomes UNTRUSTED naming it, and nothing else.
//  2. OVMF (UEFI, PCR 7) on the same TPM: the hub sees the new boot (TPM
//     reset, new boot id) with no new failure — the UEFI event log replays
//     to the quoted PCRs and the new IMA log replays to PCR 10 and fits the
//     policy — so an operator's clear makes the device TRUSTED again.
//  3. The device's bundle for both boots (rat-hub export) verifies offline
//     with rat-audit against the test CA and the pinned hub key, reaching
//     the hub's verdict (UNTRUSTED, naming the dropper); tpm2_checkquote and
//     evmctl accept the same quotes and IMA logs.
func TestRealKernel(t *testing.T) {
	root := repoRoot(t)
	bin := os.Getenv("RAT_BIN")
	if bin == "" {
		bin = filepath.Join(root, "bin")
	}
	for _, tool := range []string{"qemu-system-x86_64", "swtpm", "swtpm_setup", "swtpm_localca"} {
		harness.RequireTool(t, tool)
	}
	busybox := requireFile(t, "/bin/busybox", "/usr/bin/busybox")
	ovmf := firmware{name: "ovmf",
		code: requireFile(t, "/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_CODE.fd"),
		vars: requireFile(t, "/usr/share/OVMF/OVMF_VARS_4M.fd", "/usr/share/OVMF/OVMF_VARS.fd")}
	for _, b := range []string{"rat-agent", "rat-hub"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			t.Fatalf("%s: %v (run make build, or set RAT_BIN)", b, err)
		}
	}
	k := fetchKernel(t, filepath.Join(root, ".cache", "e2e"))

	work := t.TempDir()
	logs := os.Getenv("RAT_E2E_LOGS")
	if logs == "" {
		logs = filepath.Join(work, "logs")
	}
	if err := os.MkdirAll(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(work, "initrd.cpio")
	buildInitramfs(t, initrd, busybox, filepath.Join(bin, "rat-agent"), k)
	tpmState, ekRoots := manufactureTPM(t, filepath.Join(work, "tpm-factory"))
	h := startHub(t, filepath.Join(bin, "rat-hub"), logs, filepath.Join(work, "hub"), ekRoots)

	const id, group = "e2e-1", "e2e"
	cfg := bootConfig{kernel: k, initrd: initrd, tpmState: tpmState, broker: h.mqtt, logDir: logs,
		cmdline: "rat.id=" + id + " rat.group=" + group}

	// Boot 1: SeaBIOS, baseline enrollment.
	c1 := cfg
	c1.name, c1.fw, c1.cmdline = "boot1-seabios", firmware{name: "seabios"}, cfg.cmdline+" rat.baseline=1"
	g := boot(t, c1)
	g.waitConsole(t, "rat-e2e: ready", bootTimeout)
	d := h.waitDevice(t, g, id, "TRUSTED", bootTimeout, func(d harness.DeviceView) bool { return d.State == "TRUSTED" })
	if !d.EKVerified || d.TOFU || d.EKIssuer == "" {
		t.Errorf("EK: verified %v, TOFU %v, issuer %q; want verified to the test CA without TOFU", d.EKVerified, d.TOFU, d.EKIssuer)
	}
	if d.IMAEntries != bootMeasurements {
		t.Errorf("hub verified %d IMA entries, want %d: under tcb the kernel measures boot_aggregate, /init, busybox, 6 modules, os-release and the agent", d.IMAEntries, bootMeasurements)
	}
	t.Logf("boot 1 (SeaBIOS): TRUSTED, EK issuer %s, %d IMA entries verified", d.EKIssuer, d.IMAEntries)

	// The hub (and its broker) restarts: qemu's chardev reconnects, the
	// guest's port sees the host side go and come back, and the agent
	// reopens it and carries on.
	connects := strings.Count(readFile(g.console), "connected to broker")
	h.stop(t)
	h.start(t)
	harness.Eventually(t, verdictTimeout, "the agent reconnecting over virtio-serial", func() (bool, string) {
		n := strings.Count(readFile(g.console), "connected to broker")
		return n > connects, fmt.Sprintf("%d connects", n)
	})
	q := d.Quotes
	d = h.waitDevice(t, g, id, "a quote after the hub restart", verdictTimeout, func(d harness.DeviceView) bool { return d.Quotes > q })
	if d.State != "TRUSTED" {
		t.Fatalf("after the hub restart: %s %s", d.State, d.Reason)
	}

	g.send(t, "dropper")
	g.waitConsole(t, "rat-e2e: dropper ran", verdictTimeout)
	d = h.waitDevice(t, g, id, "UNTRUSTED", verdictTimeout, func(d harness.DeviceView) bool { return d.State == "UNTRUSTED" })
	if !strings.Contains(d.Reason, dropper) || !strings.Contains(d.Reason, notInAllowlist) {
		t.Errorf("UNTRUSTED reason %q does not name %s with %s", d.Reason, dropper, notInAllowlist)
	}
	for _, f := range d.Failures {
		if f.ID != notInAllowlist || f.Fields["path"] != dropper {
			t.Errorf("failure %s %q (path %q): only %s is unapproved", f.ID, f.Context, f.Fields["path"], dropper)
		}
	}
	t.Logf("boot 1: UNTRUSTED: %s", d.Reason)
	g.powerOff(t)
	boot1 := d

	// Boot 2: OVMF, same TPM and device.
	c2 := cfg
	c2.name, c2.fw = "boot2-ovmf", ovmf
	g = boot(t, c2)
	g.waitConsole(t, "rat-e2e: ready", bootTimeout)
	d = h.waitDevice(t, g, id, "a verified record of the new boot", bootTimeout, func(d harness.DeviceView) bool {
		return d.BootID != boot1.BootID && d.BootID != "" && d.Quotes > boot1.Quotes && d.IMAEntries > 0
	})
	for _, e := range h.Events(t, id) {
		if e.Seq >= boot1.NextSeq && (e.Kind == "failure" || e.Kind == "rejected") {
			t.Errorf("boot 2 (OVMF) record %d: %s %s %+v", e.Seq, e.Kind, e.Detail, e.Event)
		}
	}
	if d.IMAEntries != bootMeasurements {
		t.Errorf("OVMF boot: hub verified %d IMA entries, want the same %d as any boot", d.IMAEntries, bootMeasurements)
	}
	if d.State != "UNTRUSTED" || len(d.Failures) != len(boot1.Failures) {
		t.Errorf("after reboot: state %s with %d failures; want UNTRUSTED (sticky) with boot 1's %d", d.State, len(d.Failures), len(boot1.Failures))
	}
	var cleared harness.DeviceView
	if err := h.Call(http.MethodPost, "/v1/devices/"+id+"/clear", &cleared); err != nil {
		t.Fatal(err)
	}
	if cleared.State != "TRUSTED" {
		t.Fatalf("clear on the OVMF boot: state %s %s; want TRUSTED (the boot's log fits the policy)", cleared.State, cleared.Reason)
	}
	// It stays TRUSTED on the records that follow.
	q = cleared.Quotes
	d = h.waitDevice(t, g, id, "two more quotes", verdictTimeout, func(d harness.DeviceView) bool { return d.Quotes >= q+2 })
	if d.State != "TRUSTED" {
		t.Errorf("OVMF boot after clear: %s %s", d.State, d.Reason)
	}
	t.Logf("boot 2 (OVMF): new boot verified, no failures; TRUSTED after clear, %d IMA entries", d.IMAEntries)
	g.powerOff(t)

	exportBundle(t, bin, h, id, ekRoots, logs)
}

// exportBundle exports the device's evidence for both boots with rat-hub
// export and has rat-audit verify it offline, with the test CA as EK roots
// and the hub's public key pinned: the real kernel's quotes, IMA log and
// both firmware event logs must verify, the chain must be continuous across
// the reboot, and the audit must reach the hub's verdict — UNTRUSTED,
// naming the dropper.
func exportBundle(t *testing.T, bin string, h *hub, id, ekRoots, work string) {
	t.Helper()
	out, _ := exec.Command(filepath.Join(bin, "rat-hub")).CombinedOutput()
	if !strings.Contains(string(out), "export") {
		t.Log("SKIP bundle step: rat-hub has no export command in this tree")
		return
	}
	auditBin := filepath.Join(bin, "rat-audit")
	if _, err := os.Stat(auditBin); err != nil {
		t.Fatalf("rat-audit: %v (run make build, or set RAT_BIN)", err)
	}
	bundle := filepath.Join(work, id+".bundle.cbor")
	cmd := exec.Command(filepath.Join(bin, "rat-hub"), "export", "--hub", h.URL,
		"--token-file", filepath.Join(h.data, "operator.token"), "--device", id, "-o", bundle)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("rat-hub export: %v\n%s", err, out)
	}
	hubKey := filepath.Join(work, "hub-key.pub.pem")
	req, err := http.Get(h.URL + "/v1/hub-key")
	if err != nil {
		t.Fatal(err)
	}
	pem, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil || req.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/hub-key: %v %s", err, req.Status)
	}
	if err := os.WriteFile(hubKey, pem, 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd = exec.Command(auditBin, "verify", "--json", "--ek-roots", ekRoots, "--hub-key", hubKey, bundle)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	code := cmd.ProcessState.ExitCode()
	if code != 1 {
		t.Fatalf("rat-audit verify exited %d (%v), want 1 (not trusted):\n%s\n%s", code, err, stdout.String(), stderr.String())
	}
	var rep struct {
		Verdict  string `json:"verdict"`
		Quotes   int    `json:"quotes"`
		Reboots  []any  `json:"reboots"`
		Segments []any  `json:"segments"`
		Checks   []struct {
			Name, Result, Detail string
		} `json:"checks"`
		Failures []struct {
			ID     string            `json:"id"`
			Fields map[string]string `json:"fields"`
		} `json:"failures"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("rat-audit report: %v\n%s", err, stdout.String())
	}
	if rep.Verdict != "UNTRUSTED" {
		t.Errorf("audit verdict %s, want UNTRUSTED", rep.Verdict)
	}
	results := map[string]string{}
	for _, c := range rep.Checks {
		results[c.Name] = c.Result
		t.Logf("audit %-18s %-11s %s", c.Name, c.Result, c.Detail)
	}
	for _, c := range []string{"ek-certificate", "ak-binding", "quote-signatures", "claims-binding", "chain-continuity",
		"ima-replay", "event-log-replay", "bundle-signature"} {
		if results[c] != "pass" {
			t.Errorf("audit check %s: %q, want pass on the real kernel's evidence", c, results[c])
		}
	}
	if results["ima-policy"] != "fail" {
		t.Errorf("audit check ima-policy: %q, want fail (the dropper)", results["ima-policy"])
	}
	named := false
	for _, f := range rep.Failures {
		if f.ID == notInAllowlist && f.Fields["path"] == dropper {
			named = true
		}
	}
	if !named {
		t.Errorf("audit failures %+v do not name %s", rep.Failures, dropper)
	}
	if len(rep.Reboots) != 1 || len(rep.Segments) != 1 {
		t.Errorf("audit saw %d reboots in %d segments; want the one reboot into OVMF in one continuous chain", len(rep.Reboots), len(rep.Segments))
	}
	t.Logf("rat-audit: %s over %d quotes, %d reboot(s)", rep.Verdict, rep.Quotes, len(rep.Reboots))
	openChecks(t, auditBin, bundle, rep.Quotes)
}

// openChecks has independent tools check the same real-kernel evidence:
// rat-audit export-open writes the bundle as plain files and its verify.sh
// runs tpm2_checkquote on every quote and evmctl's IMA replay into every
// quoted PCR 10, and checks the claims binding and hash chain with
// sha256sum, and tpm2_eventlog's replay of each boot's firmware log against
// the quoted PCRs 0-9. Those must all pass. Its policy-signature line is
// logged, not asserted: the baseline policy here is unsigned.
func openChecks(t *testing.T, auditBin, bundle string, quotes int) {
	t.Helper()
	harness.RequireTool(t, "tpm2_checkquote")
	harness.RequireTool(t, "evmctl")
	harness.RequireTool(t, "tpm2_eventlog")
	dir := strings.TrimSuffix(bundle, ".cbor") + ".open"
	_ = os.RemoveAll(dir)
	if out, err := exec.Command(auditBin, "export-open", bundle, dir).CombinedOutput(); err != nil {
		t.Fatalf("rat-audit export-open: %v\n%s", err, out)
	}
	cmd := exec.Command("./verify.sh")
	cmd.Dir = dir
	out, _ := cmd.CombinedOutput()
	count := map[string]int{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "ok":
			if f[1] == "quote" && strings.Contains(line, "tpm2_checkquote") || f[1] == "ima" && strings.Contains(line, "evmctl") {
				count[f[1]]++
			}
		case "FAILED", "SKIPPED":
			if f[1] == "policy" {
				t.Logf("verify.sh (not asserted): %s", line)
				continue
			}
			t.Errorf("verify.sh: %s", line)
		}
	}
	if count["quote"] != quotes || count["ima"] != quotes {
		t.Errorf("verify.sh: tpm2_checkquote accepted %d and evmctl replayed %d of %d quotes:\n%s", count["quote"], count["ima"], quotes, out)
	}
	t.Logf("verify.sh: tpm2_checkquote accepts all %d quotes, evmctl replays the kernel's IMA log into each quoted PCR 10", quotes)

	// The two boots' firmware logs, which rat-audit replayed, are what they
	// should be: SeaBIOS's without UEFI events, OVMF's with the Secure Boot
	// variables measured into PCR 7.
	logs, _ := filepath.Glob(filepath.Join(dir, "eventlog", "*.bin"))
	if len(logs) != 2 {
		t.Fatalf("bundle holds %d firmware event logs, want one per boot: %v", len(logs), logs)
	}
	var uefi []bool
	for _, l := range logs {
		out, err := exec.Command("tpm2_eventlog", l).CombinedOutput()
		if err != nil {
			t.Fatalf("tpm2_eventlog %s: %v\n%s", l, err, out)
		}
		uefi = append(uefi, regexp.MustCompile(`PCRIndex: 7\s+EventType: EV_EFI_VARIABLE_DRIVER_CONFIG`).Match(out))
	}
	if uefi[0] || !uefi[1] {
		t.Errorf("firmware logs: UEFI Secure Boot variables in PCR 7 = %v; want [false true] (SeaBIOS, then OVMF)", uefi)
	}
}
