package gomods

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"sort"
	"strings"
)

// Sum is one line of a go.sum file.
type Sum struct {
	Path    string // module path, e.g. github.com/google/go-tpm
	Version string // e.g. v0.9.8, without the /go.mod suffix
	GoMod   bool   // the line is the hash of the go.mod file, not the zip
	Hash    string // "h1:" + base64(sha256 tree hash)
}

// Module is one module@version of a go.sum with the hashes it pins.
type Module struct {
	Path    string
	Version string
	ZipHash string // h1 of the module zip; "" when only go.mod is pinned
	ModHash string // h1 of the go.mod file; "" when go.sum has no /go.mod line
}

// Key is module@version.
func (m Module) Key() string { return m.Path + "@" + m.Version }

// NeedsZip reports whether the go command needs the whole module (go.sum
// pins its zip), not just its go.mod file.
func (m Module) NeedsZip() bool { return m.ZipHash != "" }

// ParseGoSum parses a go.sum file. It refuses anything the go command would
// not write: lines that are not "path version hash", hashes that are not
// h1 (sha256, 32 bytes), paths and versions with characters no module path
// or version has, and the same line twice with different hashes (go.sum
// would then pin two different contents for one module).
func ParseGoSum(data []byte) ([]Sum, error) {
	var out []Sum
	seen := map[string]string{}
	for i, line := range bytes.Split(data, []byte("\n")) {
		n := i + 1
		s := strings.TrimSuffix(string(line), "\r")
		if strings.TrimSpace(s) == "" {
			continue
		}
		f := strings.Fields(s)
		if len(f) != 3 {
			return nil, fmt.Errorf("go.sum line %d: want \"path version hash\", have %d fields", n, len(f))
		}
		sum := Sum{Path: f[0], Version: f[1], Hash: f[2]}
		if v, ok := strings.CutSuffix(sum.Version, "/go.mod"); ok {
			sum.Version, sum.GoMod = v, true
		}
		if err := checkPath(sum.Path); err != nil {
			return nil, fmt.Errorf("go.sum line %d: module path %q: %w", n, sum.Path, err)
		}
		if err := checkVersion(sum.Version); err != nil {
			return nil, fmt.Errorf("go.sum line %d: version %q: %w", n, sum.Version, err)
		}
		if err := checkH1(sum.Hash); err != nil {
			return nil, fmt.Errorf("go.sum line %d: hash: %w", n, err)
		}
		key := f[0] + " " + f[1]
		if prev, ok := seen[key]; ok {
			if prev != sum.Hash {
				return nil, fmt.Errorf("go.sum line %d: %s pinned twice with different hashes", n, key)
			}
			continue
		}
		seen[key] = sum.Hash
		out = append(out, sum)
	}
	return out, nil
}

// Modules groups go.sum lines by module@version, sorted by path then version.
func Modules(sums []Sum) []Module {
	byKey := map[string]*Module{}
	for _, s := range sums {
		k := s.Path + "@" + s.Version
		m := byKey[k]
		if m == nil {
			m = &Module{Path: s.Path, Version: s.Version}
			byKey[k] = m
		}
		if s.GoMod {
			m.ModHash = s.Hash
		} else {
			m.ZipHash = s.Hash
		}
	}
	out := make([]Module, 0, len(byKey))
	for _, m := range byKey {
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Version < out[j].Version
	})
	return out
}

func checkH1(h string) error {
	b64, ok := strings.CutPrefix(h, "h1:")
	if !ok {
		return fmt.Errorf("%q is not an h1: hash", h)
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil {
		return fmt.Errorf("%q: %w", h, err)
	}
	if len(raw) != 32 {
		return fmt.Errorf("%q: %d bytes, want 32 (sha256)", h, len(raw))
	}
	return nil
}

// checkPath accepts the characters of module paths (golang.org/x/mod/module
// allows ASCII letters, digits and -._~/ and, in the first element, a dot).
func checkPath(p string) error {
	if p == "" || strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.Contains(p, "//") {
		return fmt.Errorf("empty element")
	}
	for _, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-._~/+", r)) {
			return fmt.Errorf("character %q", r)
		}
	}
	for _, el := range strings.Split(p, "/") {
		if el == "." || el == ".." {
			return fmt.Errorf("element %q", el)
		}
	}
	return nil
}

// checkVersion accepts semantic versions with a v prefix (v1.2.3,
// v0.0.0-2023…-abcdef, v2.0.0+incompatible), which is all go.sum holds.
func checkVersion(v string) error {
	if len(v) < 2 || v[0] != 'v' || v[1] < '0' || v[1] > '9' {
		return fmt.Errorf("not a semantic version")
	}
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-.+", r)) {
			return fmt.Errorf("character %q", r)
		}
	}
	return nil
}

// escapePath is the module cache's and proxy's case encoding: every
// upper-case letter becomes '!' and its lower case.
func escapePath(p string) string {
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
