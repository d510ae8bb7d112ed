package integration

import (
	"bytes"
	"flag"
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

// bin holds the paths of the binaries TestMain built.
var bin struct {
	hub, agent, devsim, rat string
}

// TestMain builds the binaries once, the way an operator would get them
// (the agent static and without cgo, from its own module).
func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() && os.Getenv("RAT_REQUIRE_INTEGRATION") != "1" {
		fmt.Println("integration: skipped in -short mode")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "rat-integration-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := 1
	if err := buildAll(dir); err != nil {
		fmt.Fprintln(os.Stderr, "integration: build:", err)
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

func buildAll(dir string) error {
	goBin := os.Getenv("GO")
	if goBin == "" {
		goBin = "go"
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		return err
	}
	builds := []struct {
		dir  string
		env  []string
		args []string
	}{
		{root, nil, []string{"build", "-o", dir + "/", "./cmd/rat-hub", "./cmd/rat-devsim", "./cmd/rat"}},
		{filepath.Join(root, "device"), []string{"CGO_ENABLED=0"}, []string{"build", "-o", dir + "/", "./cmd/rat-agent"}},
	}
	for _, b := range builds {
		cmd := exec.Command(goBin, b.args...)
		cmd.Dir = b.dir
		cmd.Env = append(os.Environ(), b.env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s in %s: %w\n%s", strings.Join(b.args, " "), b.dir, err, out)
		}
	}
	bin.hub = filepath.Join(dir, "rat-hub")
	bin.agent = filepath.Join(dir, "rat-agent")
	bin.devsim = filepath.Join(dir, "rat-devsim")
	bin.rat = filepath.Join(dir, "rat")
	return nil
}

// requireTool finds an external tool, skipping the test without it, or
// failing it when RAT_REQUIRE_INTEGRATION=1 (CI installs every tool).
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		// Debian installs mosquitto in /usr/sbin, which a non-root
		// user's PATH often lacks.
		for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
			if q, qerr := exec.LookPath(filepath.Join(dir, name)); qerr == nil {
				return q
			}
		}

		if os.Getenv("RAT_REQUIRE_INTEGRATION") == "1" {
			t.Fatalf("%s not installed and RAT_REQUIRE_INTEGRATION=1", name)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

// proc is a process the test started; it is stopped by its PID.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// startProc starts bin with args, its stdout and stderr appended to
// logDir/name.log; the process is killed when the test ends, and the log's
// tail is shown if the test failed (or RAT_INTEGRATION_LOGS=1).
func startProc(t *testing.T, logDir, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "=== %s start: %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	latestMu.Lock()
	latest[logPath] = p
	latestMu.Unlock()
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.signal(syscall.SIGKILL)
		<-p.done
		latestMu.Lock()
		last := latest[logPath] == p // a restarted process shares its log: show it once
		latestMu.Unlock()
		if last && (t.Failed() || os.Getenv("RAT_INTEGRATION_LOGS") == "1") {
			t.Logf("--- tail of %s (%s)\n%s", name, logPath, tail(logPath, 40))
		}
	})
	return p
}

// latest is the newest process writing each log file.
var (
	latestMu sync.Mutex
	latest   = map[string]*proc{}
)

func (p *proc) signal(sig syscall.Signal) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(sig)
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill SIGKILLs the process and waits for it to be gone.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	p.signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s (pid %d) did not die on SIGKILL", p.name, p.cmd.Process.Pid)
	}
}

// stop asks the process to exit (SIGTERM), killing it if it does not.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Logf("%s did not exit on SIGTERM; killing it", p.name)
		p.kill(t)
	}
}

func tail(path string, n int) string {
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

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitListening waits until addr accepts TCP connections or p exits.
func waitListening(p *proc, addr string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return true
		}
		if p.exited() {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// eventually polls cond until it holds, failing the test after timeout with
// the last thing cond said. Timeouts are liveness bounds, not measurements.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
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

// spool appends lines to a rat-devsim exec spool: each line is a path that
// "executes" on the simulated device.
type spool struct {
	mu   sync.Mutex
	path string
	n    int
}

func (s *spool) exec(t *testing.T, path string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := os.OpenFile(s.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	if _, err := f.WriteString(path + "\n"); err != nil {
		t.Error(err)
		return
	}
	s.n++
}

func (s *spool) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// writeFiles creates dir with the named files (content: the name and a
// salt, so that every test's digests are its own).
func writeFiles(t *testing.T, dir string, names ...string) []string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range names {
		p := filepath.Join(dir, n)
		body := fmt.Sprintf("#!/bin/sh\n# %s of %s\necho %s\n", n, t.Name(), n)
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func fileContains(path, s string) bool {
	b, err := os.ReadFile(path)
	return err == nil && bytes.Contains(b, []byte(s))
}

// touch creates the spool file empty.
func (s *spool) touch(t *testing.T) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}
