package audit_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The auditor must run without our service: it never imports the hub.
// The bundle format must stay importable by the agent: no sigstore-go in
// evidence/bundle.
func TestImportBoundaries(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		if os.Getenv("RAT_REQUIRE_INTEGRATION") == "1" {
			t.Fatal("go tool not on PATH and RAT_REQUIRE_INTEGRATION=1")
		}
		t.Skip("go tool not on PATH")
	}
	for _, tc := range []struct {
		dir, pkg, forbidden string
	}{
		{"..", "./audit", "github.com/ratatouille/rat/hub"},
		{"..", "./cmd/rat-audit", "github.com/ratatouille/rat/hub"},
		{"../evidence", "./bundle", "sigstore"},
	} {
		cmd := exec.Command("go", "list", "-deps", tc.pkg)
		cmd.Dir = tc.dir
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list %s: %v", tc.pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			if strings.Contains(dep, tc.forbidden) {
				t.Errorf("%s imports %s", tc.pkg, dep)
			}
		}
	}
}
