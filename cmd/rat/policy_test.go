package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPolicyCLI(t *testing.T) {
	s := "../../testdata/keylime/create-policy-static/"
	dir := t.TempDir()
	gen := filepath.Join(dir, "p.json")
	bad := filepath.Join(dir, "bad.log")
	if err := os.WriteFile(bad, []byte("10 zz ima-ng sha256:00 /x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
	}{
		{name: "create", args: []string{"create", "--ima-log", s + "test2/ascii_runtime_measurements-1", "-o", gen}, wantCode: 0},
		{name: "check own log", args: []string{"check", "--policy", gen, "--ima-log", s + "test2/ascii_runtime_measurements-1"}, wantCode: 0, wantOut: "ok: 4 entries"},
		{name: "check other log", args: []string{"check", "--policy", gen, "--ima-log", s + "test2/ascii_runtime_measurements-2", "--json"}, wantCode: 1, wantOut: "ima.validation.ima-ng.not_in_allowlist"},
		{name: "invalid policy", args: []string{"check", "--policy", "../../testdata/keylime/policy/runtime-policy-test.json", "--ima-log", s + "test2/ascii_runtime_measurements-1"}, wantCode: 2},
		{name: "bad log line", args: []string{"check", "--policy", gen, "--ima-log", bad}, wantCode: 2},
		{name: "missing args", args: []string{"check"}, wantCode: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			var code int
			switch tc.args[0] {
			case "create":
				code = policyCreate(tc.args[1:], &out, &errb)
			default:
				code = policyCheck(tc.args[1:], &out, &errb)
			}
			if code != tc.wantCode || !strings.Contains(out.String(), tc.wantOut) {
				t.Fatalf("exit %d (want %d), stdout %q, stderr %q", code, tc.wantCode, out.String(), errb.String())
			}
		})
	}
}
