package yocto

import (
	"archive/zip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ratatouille/rat/yocto/gomods"
)

// escape is the module cache's case encoding ('!' + lower case).
func escape(p string) string {
	var b strings.Builder
	for _, r := range p {
		if r >= 'A' && r <= 'Z' {
			b.WriteByte('!')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// The recipe's build sees a module cache holding only what the gomod://
// lines fetch (the zip, plus the go.mod bitbake's fetcher extracts from it,
// or the go.mod alone for mod=1), and GOPROXY=off. This builds the agent in
// exactly such a cache, so a module the include misses fails here and not
// in a device build.
func TestGoModsSufficeOffline(t *testing.T) {
	if _, err := os.Stat(deviceDir + "/cmd/rat-agent"); err != nil {
		t.Skip("device/cmd/rat-agent does not exist yet")
	}
	if _, err := exec.LookPath("go"); err != nil {
		requireIntegration(t, "go command not found: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Fills the host module cache (and checks it against go.sum).
	if _, err := gomods.Generate(ctx, gomods.Options{ModuleDir: deviceDir, Packages: []string{"./cmd/rat-agent"}}); err != nil {
		if strings.Contains(err.Error(), "go mod download") {
			requireIntegration(t, "module download failed: %v", err)
		}
		t.Fatal(err)
	}
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	hostCache := strings.TrimSpace(string(out))
	cache := filepath.Join(t.TempDir(), "pkg", "mod")

	f := readBB(t, agentDir+"/rat-agent-go-mods.inc")
	for _, u := range strings.Fields(f.All("SRC_URI")) {
		parts := strings.Split(strings.TrimPrefix(u, "gomod://"), ";")
		mod, ver, modOnly, sum := parts[0], "", false, ""
		for _, p := range parts[1:] {
			switch {
			case strings.HasPrefix(p, "version="):
				ver = strings.TrimPrefix(p, "version=")
			case p == "mod=1":
				modOnly = true
			case strings.HasPrefix(p, "sha256sum="):
				sum = strings.TrimPrefix(p, "sha256sum=")
			}
		}
		rel := filepath.Join("cache", "download", filepath.FromSlash(escape(mod)), "@v", escape(ver))
		ext := ".zip"
		if modOnly {
			ext = ".mod"
		}
		data, err := os.ReadFile(filepath.Join(hostCache, rel+ext))
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		if s := sha256.Sum256(data); hex.EncodeToString(s[:]) != sum {
			t.Fatalf("%s: the module cache's file has sha256 %x", u, s)
		}
		dst := filepath.Join(cache, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst+ext, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if modOnly {
			continue
		}
		// As bitbake's gomod fetcher: go.mod out of the zip, or a module
		// line when the module has none.
		gomod := []byte("module " + mod + "\n")
		z, err := zip.OpenReader(dst + ext)
		if err != nil {
			t.Fatal(err)
		}
		for _, zf := range z.File {
			if zf.Name == mod+"@"+ver+"/go.mod" {
				r, _ := zf.Open()
				gomod, err = io.ReadAll(r)
				r.Close()
				if err != nil {
					t.Fatal(err)
				}
			}
		}
		z.Close()
		if err := os.WriteFile(dst+".mod", gomod, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	run := func(goarch string, args ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = deviceDir
		cmd.Env = append(os.Environ(), "GOMODCACHE="+cache, "GOPROXY=off", "GOFLAGS=-modcacherw -mod=readonly",
			"GOWORK=off", "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("GOARCH=%s go %s with only the recipe's modules: %v\n%s", goarch, strings.Join(args, " "), err, out)
		}
	}
	// go-mod.bbclass lists the packages first (go list needs more go.mod
	// files than go build), then installs them.
	for _, arch := range []string{"amd64", "arm64", "arm"} {
		run(arch, "list", "-deps", "./cmd/rat-agent")
	}
	run("amd64", "build", "-trimpath", "-o", filepath.Join(t.TempDir(), "rat-agent"), "./cmd/rat-agent")
}
