package integration

import (
	"flag"
	"fmt"
	"github.com/ratatouille/rat/test/harness"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
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

// startBin starts bin with args (and env added to the test's) under the
// harness: its output goes to logDir/name.log, it is killed when the test
// ends.
func startBin(t *testing.T, logDir, name string, env []string, bin string, args ...string) *harness.Proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	return harness.Start(t, logDir, name, cmd)
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
