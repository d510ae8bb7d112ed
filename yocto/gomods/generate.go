package gomods

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Options says which module to generate the includes for.
type Options struct {
	// ModuleDir holds go.mod and go.sum (the repository's device/).
	ModuleDir string
	// Packages are the packages the recipe builds (its GO_INSTALL), as
	// go list patterns relative to ModuleDir, e.g. "./cmd/rat-agent".
	// Their dependencies decide the licenses include.
	Packages []string
	// Go is the go command; "go" when empty.
	Go string
}

// Entry is one gomod:// SRC_URI line.
type Entry struct {
	Module
	ModOnly bool   // mod=1: fetch only the go.mod file
	SHA256  string // hex sha256 of the zip, or of the go.mod file when ModOnly
}

// URI is the SRC_URI entry bitbake's gomod fetcher takes.
func (e Entry) URI() string {
	if e.ModOnly {
		return fmt.Sprintf("gomod://%s;version=%s;mod=1;sha256sum=%s", e.Path, e.Version, e.SHA256)
	}
	return fmt.Sprintf("gomod://%s;version=%s;sha256sum=%s", e.Path, e.Version, e.SHA256)
}

// Result is what Generate produces.
type Result struct {
	Entries  []Entry
	Licenses []LicenseFile
	GoMods   []byte // content of <recipe>-go-mods.inc
	LicInc   []byte // content of <recipe>-licenses.inc
}

// Generate reads ModuleDir/go.sum, makes sure every module file it pins is
// in the module cache (go mod download), checks each against its go.sum h1
// hash, and renders both include files.
func Generate(ctx context.Context, opt Options) (*Result, error) {
	if opt.Go == "" {
		opt.Go = "go"
	}
	data, err := os.ReadFile(filepath.Join(opt.ModuleDir, "go.sum"))
	if err != nil {
		return nil, fmt.Errorf("gomods: %w", err)
	}
	sums, err := ParseGoSum(data)
	if err != nil {
		return nil, fmt.Errorf("gomods: %s: %w", filepath.Join(opt.ModuleDir, "go.sum"), err)
	}
	mods := Modules(sums)
	cache, err := goOutput(ctx, opt, nil, "env", "GOMODCACHE")
	if err != nil {
		return nil, err
	}
	cache = strings.TrimSpace(cache)
	if cache == "" {
		return nil, errors.New("gomods: go env GOMODCACHE is empty")
	}
	if err := download(ctx, opt, cache, mods); err != nil {
		return nil, err
	}
	entries, err := Entries(cache, mods)
	if err != nil {
		return nil, err
	}
	lics, err := licenses(ctx, opt, cache)
	if err != nil {
		return nil, err
	}
	return &Result{Entries: entries, Licenses: lics, GoMods: RenderGoMods(entries), LicInc: RenderLicenses(lics)}, nil
}

// cacheFile is where the module cache keeps module@version's zip or .mod.
func cacheFile(cache string, m Module, ext string) string {
	return filepath.Join(cache, "cache", "download", filepath.FromSlash(escapePath(m.Path)), "@v", escapePath(m.Version)+ext)
}

// Entries turns modules into SRC_URI entries from the files in the module
// cache, refusing any file whose h1 hash is not the one go.sum pins.
func Entries(cache string, mods []Module) ([]Entry, error) {
	var out []Entry
	for _, m := range mods {
		if m.ModHash != "" {
			mod, err := os.ReadFile(cacheFile(cache, m, ".mod"))
			if err != nil {
				return nil, fmt.Errorf("gomods: go.mod of %s: %w", m.Key(), err)
			}
			if got := goModH1(mod); got != m.ModHash {
				return nil, fmt.Errorf("gomods: go.mod of %s in the module cache hashes to %s, go.sum pins %s", m.Key(), got, m.ModHash)
			}
			if !m.NeedsZip() {
				out = append(out, Entry{Module: m, ModOnly: true, SHA256: sha256Hex(mod)})
				continue
			}
		}
		zipPath := cacheFile(cache, m, ".zip")
		got, err := zipH1(zipPath)
		if err != nil {
			return nil, fmt.Errorf("gomods: %s: %w", m.Key(), err)
		}
		if got != m.ZipHash {
			return nil, fmt.Errorf("gomods: zip of %s in the module cache hashes to %s, go.sum pins %s", m.Key(), got, m.ZipHash)
		}
		zipData, err := os.ReadFile(zipPath)
		if err != nil {
			return nil, fmt.Errorf("gomods: %s: %w", m.Key(), err)
		}
		out = append(out, Entry{Module: m, SHA256: sha256Hex(zipData)})
	}
	return out, nil
}

// download fetches the module files the cache lacks. Modules go.sum pins
// by go.mod alone are downloaded only if their .mod file is missing (go mod
// download then fetches the zip too, which is harmless).
func download(ctx context.Context, opt Options, cache string, mods []Module) error {
	var want []string
	for _, m := range mods {
		ext := ".mod"
		if m.NeedsZip() {
			ext = ".zip"
		}
		if _, err := os.Stat(cacheFile(cache, m, ext)); err != nil {
			want = append(want, m.Key())
		}
	}
	if len(want) == 0 {
		return nil
	}
	out, err := goOutput(ctx, opt, nil, append([]string{"mod", "download", "-json"}, want...)...)
	dec := json.NewDecoder(strings.NewReader(out))
	var failed []string
	for {
		var r struct{ Path, Version, Error string }
		if derr := dec.Decode(&r); derr == io.EOF {
			break
		} else if derr != nil {
			return fmt.Errorf("gomods: go mod download -json output: %w", derr)
		}
		if r.Error != "" {
			failed = append(failed, r.Path+"@"+r.Version+": "+r.Error)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("gomods: go mod download: %s", strings.Join(failed, "; "))
	}
	return err
}

// goOutput runs the go command in ModuleDir for linux without cgo (the
// recipe's build), with the module graph read-only.
func goOutput(ctx context.Context, opt Options, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, opt.Go, args...)
	cmd.Dir = opt.ModuleDir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly", "GOOS=linux", "CGO_ENABLED=0")
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("gomods: %s %s in %s: %w: %s", opt.Go, strings.Join(args, " "), opt.ModuleDir, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// AgentPackages is what the licenses include is made from: pkg (the
// recipe's GO_INSTALL, relative to moduleDir) once it exists, and until
// then every package of the module, which the program will be built from.
func AgentPackages(moduleDir, pkg string) []string {
	if st, err := os.Stat(filepath.Join(moduleDir, pkg)); err == nil && st.IsDir() {
		return []string{pkg}
	}
	return []string{"./..."}
}
