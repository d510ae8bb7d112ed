package vendortar

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("RAT_REQUIRE_INTEGRATION") == "1" {
				t.Fatalf("%s not found (RAT_REQUIRE_INTEGRATION=1): %v", tool, err)
			}
			t.Skipf("%s not found: %v", tool, err)
		}
	}
}

// The same commit gives the same bytes, and the tree inside builds the
// agent with -mod=vendor, no proxy and an empty module cache: what a
// recipe without the gomod:// fetcher needs.
func TestWriteReproducibleAndBuildsVendored(t *testing.T) {
	requireTools(t, "git", "go")
	if _, err := os.Stat("../../device/cmd/rat-agent"); err != nil {
		t.Skip("device/cmd/rat-agent does not exist yet")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// A commit that exists in every clone with the agent: HEAD's.
	opt := Options{Repo: "../..", Commit: "HEAD", Module: "device", Prefix: "rat-test"}
	var a, b bytes.Buffer
	revA, err := Write(ctx, &a, opt)
	if err != nil {
		if strings.Contains(err.Error(), "go mod vendor") {
			t.Skipf("go mod vendor (needs the module cache or proxy): %v", err)
		}
		t.Fatal(err)
	}
	opt.Commit = revA // HEAD may move while the test runs
	if _, err := Write(ctx, &b, opt); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatalf("two archives of %s differ (%d and %d bytes)", revA, a.Len(), b.Len())
	}

	dir := t.TempDir()
	zr, err := gzip.NewReader(bytes.NewReader(a.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() {
		t.Errorf("gzip header carries name %q / time %v", zr.Name, zr.ModTime)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(h.Name, "rat-test/") || h.Uid != 0 || h.Gid != 0 {
			t.Fatalf("entry %q uid %d gid %d", h.Name, h.Uid, h.Gid)
		}
		names = append(names, h.Name)
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			os.MkdirAll(p, 0o755)
		case tar.TypeReg:
			os.MkdirAll(filepath.Dir(p), 0o755)
			data, _ := io.ReadAll(tr)
			if err := os.WriteFile(p, data, os.FileMode(h.Mode)); err != nil {
				t.Fatal(err)
			}
		case tar.TypeSymlink:
			os.Symlink(h.Linkname, p)
		}
	}
	for i := 1; i < len(names); i++ {
		if strings.TrimSuffix(names[i-1], "/") >= strings.TrimSuffix(names[i], "/") {
			t.Fatalf("entries not sorted: %q before %q", names[i-1], names[i])
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "rat-test/device/vendor/modules.txt")); err != nil {
		t.Fatalf("no device/vendor/modules.txt: %v", err)
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-mod=vendor", "-trimpath", "-o", filepath.Join(t.TempDir(), "rat-agent"), "./cmd/rat-agent")
	cmd.Dir = filepath.Join(dir, "rat-test/device")
	cmd.Env = append(os.Environ(), "GOPROXY=off", "GOMODCACHE="+t.TempDir(), "GOFLAGS=-modcacherw", "GOWORK=off", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("vendored build: %v\n%s", err, out)
	}
}
