package runtimepolicy

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ratatouille/rat/evidence/ima"
)

type genConfig struct {
	base            *Policy
	excludes        []string
	imaBuf          bool
	keyrings        bool
	ignoredKeyrings []string
	allowlist       map[string][]string
	verifKeys       [][]byte
	now             func() time.Time
}

// GenOption configures FromEntries.
type GenOption func(*genConfig)

// WithBase merges the generated digests into a copy of base.
func WithBase(base *Policy) GenOption { return func(c *genConfig) { c.base = base } }

// WithExcludes sets the exclude regexes (Keylime's --excludelist): they are
// written to the policy and matching entries are left out.
func WithExcludes(patterns ...string) GenOption {
	return func(c *genConfig) { c.excludes = append(c.excludes, patterns...) }
}

// WithIMABuf keeps non-key ima-buf entries in the "ima-buf" section
// (Keylime's --ima-buf).
func WithIMABuf() GenOption { return func(c *genConfig) { c.imaBuf = true } }

// WithKeyrings keeps key ima-buf entries in the "keyrings" section
// (Keylime's --keyrings).
func WithKeyrings() GenOption { return func(c *genConfig) { c.keyrings = true } }

// WithIgnoredKeyrings lists keyrings to ignore (Keylime's --ignored-keyrings).
func WithIgnoredKeyrings(names ...string) GenOption {
	return func(c *genConfig) { c.ignoredKeyrings = append(c.ignoredKeyrings, names...) }
}

// WithAllowlist merges a flat allowlist (see ParseAllowlist) into the
// digests, as Keylime's --allowlist does.
func WithAllowlist(digests map[string][]string) GenOption {
	return func(c *genConfig) { c.allowlist = digests }
}

// WithVerificationKeys adds IMA signature verification keys (PEM or DER
// certificates or public keys) to "verification-keys", as Keylime's
// --verification-key does.
func WithVerificationKeys(keys ...[]byte) GenOption {
	return func(c *genConfig) { c.verifKeys = append(c.verifKeys, keys...) }
}

// WithClock sets the clock used for meta.timestamp.
func WithClock(now func() time.Time) GenOption { return func(c *genConfig) { c.now = now } }

// FromEntries builds a runtime policy from an IMA log as Keylime's
// create_runtime_policy does: every file entry's digest under its path
// (boot_aggregate included), and with the options ima-buf and keyring
// entries. Like Keylime it does not skip violation entries.
func FromEntries(entries []ima.Entry, opts ...GenOption) (*Policy, error) {
	cfg := genConfig{now: time.Now}
	for _, o := range opts {
		o(&cfg)
	}
	p := Empty()
	if cfg.base != nil {
		p = clonePolicy(cfg.base)
	}
	p.Meta.Version = CurrentVersion
	p.Meta.Generator = GeneratorLegacyAllowList
	p.Meta.Timestamp = cfg.now().Format("2006-01-02 15:04:05.000000")
	for _, ex := range cfg.excludes {
		if !slices.Contains(p.Excludes, ex) {
			p.Excludes = append(p.Excludes, ex)
		}
	}
	for _, k := range cfg.ignoredKeyrings {
		if !slices.Contains(p.IMA.IgnoredKeyrings, k) {
			p.IMA.IgnoredKeyrings = append(p.IMA.IgnoredKeyrings, k)
		}
	}
	if err := p.compile(); err != nil {
		return nil, err
	}
	if err := addVerificationKeys(p, cfg.verifKeys); err != nil {
		return nil, err
	}
	for path, ds := range p.Digests {
		for _, d := range ds {
			if !knownDigestLen(len(d)) {
				return nil, fmt.Errorf("runtimepolicy: base policy digest for %s: %d hex digits is no known algorithm", path, len(d))
			}
		}
	}
	for path, ds := range cfg.allowlist {
		for _, d := range ds {
			if !knownDigestLen(len(d)) {
				return nil, fmt.Errorf("runtimepolicy: allowlist digest for %s: %d hex digits is no known algorithm", path, len(d))
			}
		}
	}
	for i, e := range entries {
		if e.TemplateName == "ima-buf" && !cfg.imaBuf && !cfg.keyrings {
			continue
		}
		if want, ok := digestSizes[e.DigestAlg]; !ok || want != len(e.Digest) {
			return nil, fmt.Errorf("runtimepolicy: IMA log entry %d (%s): digest algorithm %q with %d bytes is not allowed", i+1, e.Path, e.DigestAlg, len(e.Digest))
		}
	}
	for path, ds := range cfg.allowlist {
		for _, d := range ds {
			addDigest(p.Digests, path, d)
		}
	}
	for _, e := range entries {
		d := hex.EncodeToString(e.Digest)
		switch e.TemplateName {
		case "ima", "ima-ng", "ima-sig":
			if p.Excluded(e.Path) {
				continue
			}
			addDigest(p.Digests, e.Path, d)
		case "ima-buf":
			if isKey(e.Buf) {
				if cfg.keyrings && !slices.Contains(p.IMA.IgnoredKeyrings, e.Path) && !slices.Contains(p.IMA.IgnoredKeyrings, "*") {
					addDigest(p.Keyrings, e.Path, d)
				}
			} else if cfg.imaBuf {
				addDigest(p.IMABuf, e.Path, d)
			}
		}
	}
	return p, nil
}

// ParseAllowlist reads a flat allowlist ("<hexdigest> <path>" per line,
// sha256sum style) into a path → digests map.
func ParseAllowlist(data []byte) (map[string][]string, error) {
	out := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		d, path, ok := strings.Cut(line, " ")
		path = strings.TrimLeft(path, " *")
		if _, err := hex.DecodeString(d); !ok || err != nil || len(d) < 40 || path == "" {
			return nil, fmt.Errorf("runtimepolicy: allowlist line %d: want \"<hex digest> <path>\"", n)
		}
		addDigest(out, path, strings.ToLower(d))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("runtimepolicy: allowlist: %w", err)
	}
	return out, nil
}

func addDigest(m map[string][]string, path, d string) {
	if !slices.Contains(m[path], d) {
		m[path] = append(m[path], d)
	}
}

func clonePolicy(b *Policy) *Policy {
	p := *b
	p.Digests = cloneMap(b.Digests)
	p.Keyrings = cloneMap(b.Keyrings)
	p.IMABuf = cloneMap(b.IMABuf)
	p.Excludes = append([]string{}, b.Excludes...)
	p.IMA.IgnoredKeyrings = append([]string{}, b.IMA.IgnoredKeyrings...)
	p.excludeRE = nil
	return &p
}

func cloneMap(m map[string][]string) map[string][]string {
	out := make(map[string][]string, len(m))
	for k, v := range m {
		out[k] = slices.Clone(v)
	}
	return out
}

// digestSizes are the file digest algorithms Keylime's generator accepts.
var digestSizes = map[string]int{"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64, "sm3_256": 32}

func knownDigestLen(hexLen int) bool {
	for _, n := range digestSizes {
		if 2*n == hexLen {
			return true
		}
	}
	return false
}
