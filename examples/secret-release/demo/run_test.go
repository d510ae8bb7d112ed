package demo

import (
	"strings"
	"testing"
)

// The narrated demo is itself a check: Run fails if any step misbehaves.
func TestRun(t *testing.T) {
	var out strings.Builder
	if err := Run(&out, t.TempDir()); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"secret released", "ear.status=contraindicated", `is "revoked"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
