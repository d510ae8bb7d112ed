package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ratatouille/rat/evidence/ima"
)

func TestIMAReplayCLI(t *testing.T) {
	const log = "../../testdata/ima/ubuntu2404-kernel68-ima-ng-sha256.ascii"
	raw, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	es, err := ima.ParseASCII(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "binary_runtime_measurements")
	if err := os.WriteFile(bin, ima.MarshalBinary(es), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"ascii sha256", []string{"replay", log}, 0, "\n0a1447c3"},
		{"binary sha256", []string{"replay", bin}, 0, "\n0a1447c3"},
		{"ascii sha1", []string{"replay", "--bank", "sha1", log}, 0, "\nf90a1289"},
		{"missing file", []string{"replay", "/nonexistent"}, 2, "no such file"},
		{"bad bank", []string{"replay", "--bank", "md5", log}, 2, "unknown bank"},
		{"no verb", nil, 2, "usage"},
		{"json", []string{"replay", "--json", log}, 0, `"value":"0a1447c3`},
		{"forced wrong format", []string{"replay", "--format", "binary", log}, 2, "binary log"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := runIMA(tc.args, &out, &errb)
			if code != tc.code || !strings.Contains(out.String()+errb.String(), tc.want) {
				t.Fatalf("code %d (want %d), output %q %q, want %q", code, tc.code, out.String(), errb.String(), tc.want)
			}
		})
	}
}
