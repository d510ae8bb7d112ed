package harness

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Missing skips the test for a missing tool or file, or fails it when
// RAT_REQUIRE_INTEGRATION=1 (CI installs every part, so a skip there would
// hide a test that never ran).
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("RAT_REQUIRE_INTEGRATION") == "1" {
		t.Fatalf("%s (RAT_REQUIRE_INTEGRATION=1)", msg)
	}
	t.Skipf("SKIP: %s", msg)
}

// RequireTool finds an external tool on PATH or in the sbin directories
// (Debian installs mosquitto in /usr/sbin, which a non-root user's PATH
// often lacks), or reports it Missing.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		if p, err := exec.LookPath(filepath.Join(dir, name)); err == nil {
			return p
		}
	}
	Missing(t, "%s not installed", name)
	return ""
}

// Proc is a process a test started; it is stopped by its PID.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	Log  string // the file its stdout and stderr are appended to
	done chan struct{}
}

// latest is the newest process writing each log file: a restarted process
// shares its predecessor's log, which is shown once.
var (
	latestMu sync.Mutex
	latest   = map[string]*Proc{}
)

// Start starts cmd with its stdout and stderr appended to logDir/name.log.
// The process is SIGKILLed when the test ends (and with the test binary,
// should that die first: a go test timeout skips cleanups), and the log's
// tail is shown if the test failed or RAT_INTEGRATION_LOGS=1.
func Start(t testing.TB, logDir, name string, cmd *exec.Cmd) *Proc {
	t.Helper()
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "=== %s start: %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(cmd.Args, " "))
	cmd.Stdout, cmd.Stderr = f, f
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &Proc{Name: name, Cmd: cmd, Log: logPath, done: make(chan struct{})}
	latestMu.Lock()
	latest[logPath] = p
	latestMu.Unlock()
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Signal(syscall.SIGKILL)
		<-p.done
		latestMu.Lock()
		last := latest[logPath] == p
		latestMu.Unlock()
		if last && (t.Failed() || os.Getenv("RAT_INTEGRATION_LOGS") == "1") {
			t.Logf("--- tail of %s (%s)\n%s", name, logPath, Tail(logPath, 60))
		}
	})
	return p
}

// Signal sends sig to the process unless it has exited.
func (p *Proc) Signal(sig syscall.Signal) {
	if !p.Exited() {
		_ = p.Cmd.Process.Signal(sig)
	}
}

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Kill SIGKILLs the process and waits for it to be gone.
func (p *Proc) Kill(t testing.TB) {
	t.Helper()
	p.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s (pid %d) did not die on SIGKILL", p.Name, p.Cmd.Process.Pid)
	}
}

// Stop asks the process to exit (SIGTERM), killing it if it has not
// within 15 s; it reports whether the process exited on its own.
func (p *Proc) Stop(t testing.TB) bool {
	t.Helper()
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return true
	case <-time.After(15 * time.Second):
		t.Logf("%s did not exit on SIGTERM; killing it", p.Name)
		p.Kill(t)
		return false
	}
}

// Wait waits for the process to exit on its own, killing it after timeout;
// it reports whether it exited on its own.
func (p *Proc) Wait(timeout time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		p.Signal(syscall.SIGKILL)
		<-p.done
		return false
	}
}

// WaitListening waits until addr accepts TCP connections; false if the
// process exits first or timeout passes.
func (p *Proc) WaitListening(addr string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return true
		}
		if p.Exited() {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// Tail is the last n lines of the file at path (or why it cannot be read).
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// FileContains reports whether the file at path exists and contains s.
func FileContains(path, s string) bool {
	b, err := os.ReadFile(path)
	return err == nil && bytes.Contains(b, []byte(s))
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Eventually polls cond until it holds, failing the test after timeout with
// the last thing cond said. The timeout is a liveness bound for a loaded
// machine, not a measurement.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if msg != "" {
			last = msg
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (last: %s)", what, timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
