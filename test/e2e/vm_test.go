//go:build e2e

package e2e

import (
	"bytes"
	_ "embed"
	"fmt"
	"github.com/ratatouille/rat/test/harness"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

//go:embed init.sh
var initScript []byte

// buildInitramfs writes the guest's initramfs: busybox (static) with the
// applets init uses, the static rat-agent, the virtio-serial modules, an
// os-release and /dev/console (the kernel opens it for init before
// devtmpfs is mounted).
func buildInitramfs(t *testing.T, path, busybox, agent string, k kernel) {
	t.Helper()
	if err := staticELF(busybox); err != nil {
		harness.Missing(t, "e2e: busybox-static: %v", err)
	}
	if err := staticELF(agent); err != nil {
		t.Fatalf("rat-agent must be static (make build): %v", err)
	}
	r := newInitramfs()
	for _, d := range []string{"proc", "sys", "dev", "root", "tmp", "var/lib/rat-agent"} {
		r.dir(d)
	}
	r.chardev("dev/console", 5, 1)
	r.file("init", 0o755, initScript)
	r.file("etc/os-release", 0o644, []byte("ID=ratatouille-e2e\nVERSION_ID=1\n"))
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(r.copyFile("bin/busybox", 0o755, busybox))
	for _, a := range []string{"sh", "mount", "cat", "sleep", "chmod", "poweroff", "insmod", "printf", "echo"} {
		r.symlink("bin/"+a, "busybox")
	}
	must(r.copyFile("bin/rat-agent", 0o755, agent))
	for _, m := range virtioModules {
		must(r.copyFile("lib/modules/"+m+".ko", 0o644, k.modules[m]))
	}
	var buf bytes.Buffer
	must(r.write(&buf))
	must(os.WriteFile(path, buf.Bytes(), 0o644))
}

// firmware is how a guest boots: SeaBIOS on i440fx with a TIS TPM, or OVMF
// (UEFI, TCG2 event log, PCR 7) on q35 with a CRB TPM.
type firmware struct {
	name       string
	code, vars string // OVMF only
}

// guest is one boot of the VM: qemu with swtpm as its TPM.
type guest struct {
	name    string
	qemu    *harness.Proc
	swtpm   *harness.Proc
	stdin   io.WriteCloser
	console string
}

type bootConfig struct {
	name     string
	fw       firmware
	kernel   kernel
	initrd   string
	tpmState string // swtpm state directory (this device's TPM; kept across boots)
	broker   string // host:port of the MQTT broker
	cmdline  string // rat.* parameters
	logDir   string
}

// boot starts swtpm on the device's TPM state, then qemu with the guest's
// console on stdio (commands go in on stdin) and its rat.mqtt
// virtio-serial port connected, as a TCP client, to the broker on the host.
func boot(t *testing.T, c bootConfig) *guest {
	t.Helper()
	g := &guest{name: c.name, console: filepath.Join(c.logDir, c.name+"-qemu.log")}
	sock := filepath.Join(c.logDir, c.name+"-swtpm.sock")
	g.swtpm = harness.Start(t, c.logDir, c.name+"-swtpm", exec.Command("swtpm", "socket", "--tpm2",
		"--tpmstate", "dir="+c.tpmState, "--ctrl", "type=unixio,path="+sock, "--terminate",
		"--log", "level=1"))
	harness.Eventually(t, 10*time.Second, "swtpm control socket", func() (bool, string) {
		if g.swtpm.Exited() {
			t.Fatalf("swtpm exited:\n%s", harness.Tail(g.swtpm.Log, 20))
		}
		_, err := os.Stat(sock)
		return err == nil, ""
	})
	host, port, _ := strings.Cut(c.broker, ":")
	args := []string{"-accel", "tcg", "-cpu", "max", "-m", "512", "-smp", "1",
		"-kernel", c.kernel.vmlinuz, "-initrd", c.initrd,
		"-append", "console=ttyS0 rootfstype=ramfs ima_policy=tcb ima_template=ima-ng panic=-1 quiet " + c.cmdline,
		"-nic", "none", "-display", "none", "-no-reboot", "-monitor", "none", "-serial", "stdio",
		"-chardev", "socket,id=chrtpm,path=" + sock, "-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
		"-device", "virtio-serial-pci,id=vser0",
		"-chardev", fmt.Sprintf("socket,id=mqtt,host=%s,port=%s,reconnect=1", host, port),
		"-device", "virtserialport,bus=vser0.0,chardev=mqtt,name=rat.mqtt"}
	if c.fw.code != "" {
		vars := filepath.Join(c.logDir, c.name+"-OVMF_VARS.fd")
		b, err := os.ReadFile(c.fw.vars)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(vars, b, 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-machine", "q35", "-device", "tpm-crb,tpmdev=tpm0",
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+c.fw.code,
			"-drive", "if=pflash,format=raw,unit=1,file="+vars)
	} else {
		args = append(args, "-machine", "pc", "-device", "tpm-tis,tpmdev=tpm0")
	}
	cmd := exec.Command("qemu-system-x86_64", args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	g.stdin = stdin
	g.qemu = harness.Start(t, c.logDir, c.name+"-qemu", cmd)
	return g
}

// waitConsole waits until the guest's console shows s.
func (g *guest) waitConsole(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	harness.Eventually(t, timeout, g.name+" console: "+s, func() (bool, string) {
		if harness.FileContains(g.console, s) {
			return true, ""
		}
		if g.qemu.Exited() {
			t.Fatalf("%s: qemu exited before %q:\n%s", g.name, s, harness.Tail(g.console, 40))
		}
		return false, ""
	})
}

// send gives the guest's init one command.
func (g *guest) send(t *testing.T, cmd string) {
	t.Helper()
	if _, err := io.WriteString(g.stdin, cmd+"\n"); err != nil {
		t.Fatalf("%s: send %q: %v", g.name, cmd, err)
	}
}

// powerOff asks init to stop the agent and power off, and waits for qemu
// and swtpm (which exits with its client, --terminate) to be gone.
func (g *guest) powerOff(t *testing.T) {
	t.Helper()
	g.send(t, "poweroff")
	if !g.qemu.Wait(2 * time.Minute) {
		t.Errorf("%s: qemu did not power off; killed it", g.name)
	}
	if !g.swtpm.Wait(10 * time.Second) {
		t.Errorf("%s: swtpm did not exit with qemu; killed it", g.name)
	}
}

// hub is a running rat-hub with its embedded broker, on a fixed loopback
// port so that a restarted hub is where the guest's chardev reconnects.
type hub struct {
	harness.Hub
	bin, logDir, data, ekRoots string
	mqtt                       string
	proc                       *harness.Proc
}

func startHub(t *testing.T, bin, logDir, data, ekRoots string) *hub {
	t.Helper()
	h := &hub{bin: bin, logDir: logDir, data: data, ekRoots: ekRoots, mqtt: fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))}
	h.start(t)
	return h
}

// start (re)starts the hub on its data directory and broker port.
func (h *hub) start(t *testing.T) {
	t.Helper()
	addrFile := filepath.Join(h.data, "addrs.json")
	_ = os.Remove(addrFile)
	h.proc = harness.Start(t, h.logDir, "rat-hub", exec.Command(h.bin, "serve", "--data", h.data,
		"--http", "127.0.0.1:0", "--mqtt-listen", h.mqtt, "--ek-roots", h.ekRoots,
		"--allow-unsigned-policies-unsafe", "--stale-after", "10m", "--addr-file", addrFile))
	h.Hub = harness.WaitHub(t, h.proc, addrFile, h.data)
}

// stop SIGTERMs the hub by its PID (SIGKILL if it lingers).
func (h *hub) stop(t *testing.T) {
	t.Helper()
	if !h.proc.Stop(t) {
		t.Log("rat-hub did not exit on SIGTERM; killed it")
	}
}

// waitDevice waits until the hub's view of id satisfies cond; the guest
// must keep running meanwhile.
func (h *hub) waitDevice(t *testing.T, g *guest, id, what string, timeout time.Duration, cond func(harness.DeviceView) bool) harness.DeviceView {
	t.Helper()
	var d harness.DeviceView
	harness.Eventually(t, timeout, id+": "+what, func() (bool, string) {
		if g.qemu.Exited() {
			t.Fatalf("%s: qemu exited while waiting for %s:\n%s", g.name, what, harness.Tail(g.console, 40))
		}
		if harness.FileContains(g.console, "rat-e2e: agent exited") {
			t.Fatalf("%s: rat-agent exited:\n%s", g.name, harness.Tail(g.console, 10))
		}
		if harness.FileContains(g.console, "enrollment refused by the hub") {
			t.Fatalf("%s: the hub refused enrollment:\n%s", g.name, harness.Tail(g.console, 5))
		}
		var err error
		d, err = h.Device(id)
		if err != nil {
			return false, err.Error()
		}
		return cond(d), fmt.Sprintf("state %s %s, %d quotes, %d IMA entries", d.State, d.Reason, d.Quotes, d.IMAEntries)
	})
	return d
}
