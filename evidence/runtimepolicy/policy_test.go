package runtimepolicy

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ratatouille/rat/evidence/ima"
)

const td = "../../testdata/keylime"

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(td, p))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		data    string
		wantErr string
	}{
		{name: "keylime signing input", file: "policy/sign-runtime-policy.json"},
		{name: "empty-log output", file: "create-policy-static/test1/output1.json"},
		{name: "with ima-buf", file: "create-policy-static/test2/output6.json"},
		{name: "with excludes", file: "create-policy-static/test3/output2.json"},
		{name: "sha256: prefixed digests", file: "policy/runtime-policy-test.json", wantErr: "/digests/boot_aggregate/0"},
		{name: "bogus", file: "policy/sign-runtime-policy-bogus.json", wantErr: "not JSON"},
		{name: "empty policy", file: "policy/sign-runtime-policy-empty.json"},
		{name: "empty input", data: " \n", wantErr: "empty input"},
		{name: "not an object", data: `[1,2]`, wantErr: "schema"},
		{name: "missing ima", data: `{"meta":{"version":1,"generator":1},"release":0,"digests":{},"excludes":[],"keyrings":{},"ima-buf":{},"verification-keys":""}`, wantErr: "ima"},
		{name: "bad log_hash_alg", data: `{"meta":{"version":1,"generator":1},"release":0,"digests":{},"excludes":[],"keyrings":{},"ima":{"ignored_keyrings":[],"log_hash_alg":"md5","dm_policy":null},"ima-buf":{},"verification-keys":""}`, wantErr: "/ima/log_hash_alg"},
		{name: "lookahead exclude", data: `{"meta":{"version":1,"generator":1},"release":0,"digests":{},"excludes":["/tmp/(?!x)"],"keyrings":{},"ima":{"ignored_keyrings":[],"log_hash_alg":"sha1","dm_policy":null},"ima-buf":{},"verification-keys":""}`, wantErr: "excludes[0]"},
		{name: "generator out of range", data: `{"meta":{"version":1,"generator":9},"release":0,"digests":{},"excludes":[],"keyrings":{},"ima":{"ignored_keyrings":[],"log_hash_alg":"sha1","dm_policy":null},"ima-buf":{},"verification-keys":""}`, wantErr: "/meta/generator"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := []byte(tc.data)
			if tc.file != "" {
				data = readFile(t, tc.file)
			}
			p, err := Parse(data)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				// Round trip through Marshal keeps it valid and equal.
				out, err := p.Marshal()
				if err != nil {
					t.Fatal(err)
				}
				q, err := Parse(out)
				if err != nil {
					t.Fatalf("re-Parse: %v", err)
				}
				if !reflect.DeepEqual(canon(t, out), canon(t, mustMarshal(t, q))) {
					t.Fatal("round trip changed the policy")
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse accepted invalid policy")
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %q: want ErrInvalid mentioning %q", err, tc.wantErr)
			}
		})
	}
}

func mustMarshal(t testing.TB, p *Policy) []byte {
	t.Helper()
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// canon decodes JSON into generic form with meta.timestamp removed.
func canon(t testing.TB, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if meta, ok := m["meta"].(map[string]any); ok {
		delete(meta, "timestamp")
	}
	return m
}

func TestFromEntriesMatchesKeylime(t *testing.T) {
	s := "create-policy-static/"
	exclude := strings.Fields(string(readFile(t, s+"test3/exclude-list-1")))
	tests := []struct {
		name   string
		logs   []string
		opts   []GenOption
		expect string
	}{
		{name: "empty log", logs: nil, expect: "test1/output1.json"},
		{name: "test2 log1", logs: []string{"test2/ascii_runtime_measurements-1"}, expect: "test2/output1.json"},
		{name: "test2 log1+2 default drops ima-buf", logs: []string{"test2/ascii_runtime_measurements-1", "test2/ascii_runtime_measurements-2"}, expect: "test2/output1.json"},
		{name: "ima-buf", logs: []string{"test2/ascii_runtime_measurements-1", "test2/ascii_runtime_measurements-2"}, opts: []GenOption{WithIMABuf()}, expect: "test2/output3.json"},
		{name: "ima-buf ignored keyring", logs: []string{"test2/ascii_runtime_measurements-1", "test2/ascii_runtime_measurements-2"}, opts: []GenOption{WithIMABuf(), WithIgnoredKeyrings(".builtin_trusted_keys")}, expect: "test2/output4.json"},
		{name: "keyrings ignored keyring", logs: []string{"test2/ascii_runtime_measurements-1", "test2/ascii_runtime_measurements-2"}, opts: []GenOption{WithKeyrings(), WithIgnoredKeyrings(".builtin_trusted_keys")}, expect: "test2/output5.json"},
		{name: "both", logs: []string{"test2/ascii_runtime_measurements-1", "test2/ascii_runtime_measurements-2"}, opts: []GenOption{WithIMABuf(), WithKeyrings(), WithIgnoredKeyrings(".builtin_trusted_keys")}, expect: "test2/output6.json"},
		{name: "exclude list", logs: []string{"test3/ascii_runtime_measurements-1"}, opts: []GenOption{WithExcludes(exclude...)}, expect: "test3/output1.json"},
		{name: "exclude + ignored keyrings + verification key", logs: []string{"test3/ascii_runtime_measurements-1"}, opts: []GenOption{WithExcludes(exclude...), WithIgnoredKeyrings(".builtin_trusted_keys", "test123"), WithVerificationKeys(readFile(t, s+"test3/eckey-ecdsa.pem"))}, expect: "test3/output3.json"},
		{name: "exclude + ignored keyrings", logs: []string{"test3/ascii_runtime_measurements-1"}, opts: []GenOption{WithExcludes(exclude...), WithIgnoredKeyrings(".builtin_trusted_keys", "test123")}, expect: "test3/output2.json"},
	}
	al, err := ParseAllowlist(readFile(t, s+"test4/allowlist-1"))
	if err != nil {
		t.Fatal(err)
	}
	tests = append(tests, struct {
		name   string
		logs   []string
		opts   []GenOption
		expect string
	}{name: "flat allowlist", opts: []GenOption{WithAllowlist(al)}, expect: "test4/output1.json"})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var entries []ima.Entry
			for _, l := range tc.logs {
				entries = append(entries, mustLog(t, filepath.Join(td, s+l))...)
			}
			opts := append([]GenOption{WithClock(func() time.Time { return time.Unix(0, 0) })}, tc.opts...)
			p, err := FromEntries(entries, opts...)
			if err != nil {
				t.Fatal(err)
			}
			got := canon(t, mustMarshal(t, p))
			want := canon(t, readFile(t, s+tc.expect))
			if !reflect.DeepEqual(got, want) {
				g, _ := json.Marshal(got)
				w, _ := json.Marshal(want)
				t.Fatalf("policy differs from Keylime's %s\n got: %s\nwant: %s", tc.expect, g, w)
			}
			if _, err := Parse(mustMarshal(t, p)); err != nil {
				t.Fatalf("generated policy does not validate: %v", err)
			}
		})
	}
}

func TestFromEntriesWithBase(t *testing.T) {
	for _, alg := range []string{"sha1", "sha256", "sha384", "sha512"} {
		t.Run(alg, func(t *testing.T) {
			base, err := Parse(readFile(t, "create-runtime-policy/policy-"+alg))
			if err != nil {
				t.Fatal(err)
			}
			entries := mustLog(t, filepath.Join(td, "create-runtime-policy/ima-log-"+alg))
			p, err := FromEntries(entries, WithBase(base))
			if err != nil {
				t.Fatal(err)
			}
			for path, ds := range base.Digests {
				if !reflect.DeepEqual(p.Digests[path], ds) {
					t.Errorf("base digest %s lost: %v", path, p.Digests[path])
				}
			}
			for _, e := range entries {
				if ev := Evaluate(p, []ima.Entry{e}); len(ev) != 0 {
					t.Errorf("generated policy rejects its own log entry: %v", ev)
				}
			}
			if len(p.Digests) != len(base.Digests)+len(entries) {
				t.Errorf("digests: %d paths, want %d", len(p.Digests), len(base.Digests)+len(entries))
			}
		})
	}
}

func TestFromEntriesRejectsUnknownAlgorithm(t *testing.T) {
	sha1Base, err := Parse(readFile(t, "create-runtime-policy/policy-sha1"))
	if err != nil {
		t.Fatal(err)
	}
	unknownBase, err := Parse(readFile(t, "create-runtime-policy/policy-unknown"))
	if err != nil {
		t.Fatal(err)
	}
	sha1Log := mustLog(t, filepath.Join(td, "create-runtime-policy/ima-log-sha1"))
	tests := []struct {
		name    string
		entries []ima.Entry
		opts    []GenOption
		wantErr bool
	}{
		{name: "sha1 log, sha1 base", entries: sha1Log, opts: []GenOption{WithBase(sha1Base)}},
		// Keylime's ima-log-unknown line (its 32-byte template hash is
		// refused by evidence/ima already, so the entry is built here).
		{name: "unknown algorithm entry", entries: []ima.Entry{{TemplateName: "ima-ng", DigestAlg: "unknown", Digest: make([]byte, 29), Path: "/data"}}, wantErr: true},
		{name: "sha256 name, sha1 length", entries: []ima.Entry{{TemplateName: "ima-ng", DigestAlg: "sha256", Digest: make([]byte, 20), Path: "/data"}}, wantErr: true},
		{name: "unknown base", entries: sha1Log, opts: []GenOption{WithBase(unknownBase)}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := FromEntries(tc.entries, tc.opts...)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
		})
	}
}

func TestParseAllowlist(t *testing.T) {
	tests := []struct {
		name, in string
		wantErr  bool
		paths    int
	}{
		{name: "two", in: "76f8ae56f16b39f55be8145bee2824a6d64a84c0  /a\n76f8ae56f16b39f55be8145bee2824a6d64a84c1 /b\n", paths: 2},
		{name: "comment and blank", in: "# x\n\n76f8ae56f16b39f55be8145bee2824a6d64a84c0  /a\n", paths: 1},
		{name: "no path", in: "76f8ae56f16b39f55be8145bee2824a6d64a84c0\n", wantErr: true},
		{name: "not hex", in: "zz /a\n", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseAllowlist([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err == nil && len(m) != tc.paths {
				t.Fatalf("%d paths, want %d", len(m), tc.paths)
			}
		})
	}
}

// Excluded skips an exclude's regexp when the path lacks the pattern's
// literal prefix, and uses the prefix alone for a literal pattern. Both
// must give exactly the regexp's answer.
func TestExcludedMatchesRegexp(t *testing.T) {
	patterns := []string{
		`/tmp/.*`, `/var/log/`, `boot_aggregate`, `(?i)/TMP/x`, `/a|/b`, `.*foo`, `^/x`, `/tmp$`,
		`/x(?:y)?z`, `/x*`, `\Q/a.b\E`, `(?s)/a.`, `/usr/[a-z]+/bin`, ``, `/a|`, `(/a)|(/b)`, `/é/.*`,
		`[/]tmp`, `/home/[^/]+/\.cache/.*`, `/usr/lib/modules/.*\.ko$`, `/root/.*`, `(?i)boot_AGGREGATE`,
		`/opt/\d+`, `/lib|/lib64`, `/var/(?:log|tmp)/.*`, `(?m)^/m`,
	}
	paths := []string{
		"", "/", "/tmp", "/tmp/", "/tmp/x", "/TMP/x", "/tmpfoo", "/var/log/syslog", "/var/logx", "boot_aggregate",
		"boot_aggregatex", "BOOT_aggregate", "/a", "/b", "/c", "/afoo", "foo", "/x", "/xz", "/xyz", "/xxx", "/a.b",
		"/aXb", "/a\n", "/usr/sbin/bin", "/usr/local/bin", "/é/x", "/e/x", "/home/u/.cache/f", "/home/u/x",
		"/usr/lib/modules/6.8/k.ko", "/usr/lib/modules/6.8/k.ko.zst", "/root/.bashrc", "/opt/42", "/opt/x",
		"/lib64/ld.so", "/var/tmp/z", "/m", "x\n/m",
	}
	for _, ex := range patterns {
		p := Empty()
		p.Excludes = []string{ex}
		if err := p.compile(); err != nil {
			t.Fatalf("%q: %v", ex, err)
		}
		re := regexp.MustCompile(`^(?:` + ex + `)`)
		for _, path := range paths {
			if got, want := p.Excluded(path), re.MatchString(path); got != want {
				t.Errorf("exclude %q, path %q: Excluded = %v, regexp says %v (prefix %q, literal %v)", ex, path, got, want, p.excludeRE[0].prefix, p.excludeRE[0].literal)
			}
		}
	}
}
