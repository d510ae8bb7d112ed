package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ratatouille/rat/evidence/runtimepolicy"
)

func otaSHA256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func writeDiffPolicy(t *testing.T, dir, name string, digests map[string][]string, excludes ...string) string {
	t.Helper()
	p := runtimepolicy.Empty()
	p.Digests = digests
	p.Excludes = append(p.Excludes, excludes...)
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPolicyDiff(t *testing.T) {
	dir := t.TempDir()
	d1, d2, d3 := strings.Repeat("a", 64), strings.Repeat("b", 64), strings.Repeat("c", 64)
	s1 := strings.Repeat("d", 40)
	a := writeDiffPolicy(t, dir, "a.json", map[string][]string{"/usr/bin/ls": {d1}, "/usr/bin/cat": {d2}, "/usr/bin/only-a": {d3}}, "/tmp/.*")
	b := writeDiffPolicy(t, dir, "b.json", map[string][]string{"/usr/bin/ls": {d1}, "/usr/bin/cat": {d3}, "/usr/bin/only-b": {d1}, "/tmp/x": {d2}, "boot_aggregate": {d2}})
	same := writeDiffPolicy(t, dir, "same.json", map[string][]string{"/usr/bin/ls": {d1}, "/usr/bin/cat": {d2}, "/usr/bin/only-a": {d3}}, "/tmp/.*")
	sha1 := writeDiffPolicy(t, dir, "sha1.json", map[string][]string{"/usr/bin/ls": {s1}})
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     []string
		dont     []string
	}{
		{name: "different", args: []string{a, b}, wantCode: 1, want: []string{
			"B has, A lacks: 2 path(s)",
			"/usr/bin/cat  (A allows other content: bbbbbbbbbbbbbbbb…)",
			"/usr/bin/only-b  (path not in A at all)",
			"A has, B lacks: 2 path(s)",
			"/usr/bin/only-a  (path not in B at all)",
			"B lists 1 path(s) that A's excludes leave unjudged: /tmp/x",
			"excludes only in A: /tmp/.*",
			"boot_aggregate is only in B",
			"different: 2 false-alarm path(s)",
		}, dont: []string{"/usr/bin/ls  ("}},
		{name: "same", args: []string{a, same}, wantCode: 0, want: []string{"B has, A lacks: 0 path(s)", "same: A and B allow the same file content."}},
		{name: "algorithm mismatch", args: []string{a, sha1}, wantCode: 1, want: []string{"WARNING: A's digests are sha256/sm3_256, B's are sha1"}},
		{name: "one arg", args: []string{a}, wantCode: 2},
		{name: "missing file", args: []string{a, filepath.Join(dir, "nope.json")}, wantCode: 2},
		{name: "invalid policy", args: []string{a, "../../testdata/keylime/policy/runtime-policy-test.json"}, wantCode: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := policyDiff(tc.args, &out, &errb)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d\n%s%s", code, tc.wantCode, out.String(), errb.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			for _, w := range tc.dont {
				if strings.Contains(out.String(), w) {
					t.Errorf("output has %q:\n%s", w, out.String())
				}
			}
		})
	}
	t.Run("json", func(t *testing.T) {
		var out, errb bytes.Buffer
		if code := policyDiff([]string{"--json", a, b}, &out, &errb); code != 1 {
			t.Fatalf("exit %d", code)
		}
		var r policyDiffReport
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		if len(r.OnlyB) != 2 || r.OnlyB[0].Path != "/usr/bin/cat" || r.OnlyB[1].Path != "/usr/bin/only-b" || len(r.OnlyA) != 2 {
			t.Fatalf("report %+v", r)
		}
	})
	t.Run("dispatch", func(t *testing.T) {
		if code := runPolicy([]string{"diff", a, same}); code != 0 {
			t.Fatalf("rat policy diff via dispatcher: exit %d", code)
		}
	})
}
