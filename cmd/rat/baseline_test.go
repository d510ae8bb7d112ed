package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ratatouille/rat/audit/policysig"
	"github.com/ratatouille/rat/hub/gitops"
)

const baselineLog = "../../testdata/keylime/ima/ubuntu2404-kernel68-ima-ng-sha256.ascii"

func gitIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestInitBaseline: a real Ubuntu IMA log becomes a signed policy
// committed in the gitops layout; the policy passes its own log, the
// bundle verifies, and hub/gitops applies it from that commit.
func TestInitBaseline(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		if os.Getenv("RAT_REQUIRE_INTEGRATION") == "1" {
			t.Fatal("git missing and RAT_REQUIRE_INTEGRATION=1")
		}
		t.Skip("git missing")
	}
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("GIT_CONFIG_GLOBAL", "/dev/null")
	t.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	for _, k := range []string{"GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"} {
		t.Setenv(k, "Baseline Operator")
	}
	for _, k := range []string{"GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"} {
		t.Setenv(k, "ops@example.com")
	}
	repo := filepath.Join(dir, "policies")
	if err := os.MkdirAll(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	gitIn(t, repo, "init", "-q", "-b", "main")
	if err := os.WriteFile(filepath.Join(repo, "README.md"), []byte("policies\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, "scratch.txt"), []byte("not to be committed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitIn(t, repo, "add", "README.md")
	gitIn(t, repo, "commit", "-q", "-m", "init")

	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	keyFile := filepath.Join(dir, "k.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(dir, "elsewhere.json")
	runCLICases(t, []cliCase{
		{name: "bad group", run: baseline, args: []string{"--group", "../x", "--log", baselineLog, "-o", outside}, wantCode: 2},
		{name: "sign without key", run: baseline, args: []string{"--group", "edge", "--log", baselineLog, "-o", outside, "--sign"}, wantCode: 2},
		{name: "no output", run: baseline, args: []string{"--group", "edge", "--log", baselineLog}, wantCode: 2},
		{name: "-o outside the repository", run: baseline, args: []string{"--group", "edge", "--log", baselineLog, "--commit", repo, "-o", outside}, wantCode: 2},
		{name: "missing log", run: baseline, args: []string{"--group", "edge", "--log", filepath.Join(dir, "nope"), "-o", outside}, wantCode: 2},
		{name: "plain file", run: baseline, args: []string{"--group", "edge", "--log", baselineLog, "-o", outside}, wantOut: "780 entries"},
		{name: "signed and committed", run: baseline, args: []string{"--group", "edge", "--log", baselineLog, "--sign", "--key", keyFile, "--commit", repo}, wantOut: "committed to"},
	})

	pol := filepath.Join(repo, "groups", "edge", "runtime_policy.json")
	if got := gitIn(t, repo, "log", "-1", "--format=%s"); got != "policy(edge): baseline from ubuntu2404-kernel68-ima-ng-sha256.ascii" {
		t.Fatalf("commit message %q", got)
	}
	if got := gitIn(t, repo, "show", "--name-only", "--format=", "HEAD"); got != "groups/edge/runtime_policy.json\ngroups/edge/runtime_policy.json.sigstore.json" {
		t.Fatalf("committed files %q", got)
	}
	if st := gitIn(t, repo, "status", "--porcelain"); st != "?? scratch.txt" {
		t.Fatalf("status %q", st)
	}
	var o, e bytes.Buffer
	if code := policyCheck([]string{"--policy", pol, "--ima-log", baselineLog}, &o, &e); code != 0 {
		t.Fatalf("baseline policy refuses its own log: %s %s", o.String(), e.String())
	}
	v, err := policysig.New(nil, policysig.WithPublicKey(k.Public()), policysig.WithoutTlogUnsafe())
	if err != nil {
		t.Fatal(err)
	}
	var applied []gitops.Update
	s, err := gitops.New(repo, map[string]*policysig.Verifier{"edge": v}, func(_ context.Context, u gitops.Update) error {
		applied = append(applied, u)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Sync(context.Background(), gitIn(t, repo, "rev-parse", "HEAD"))
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != 1 || applied[0].Group != "edge" || st.Groups[0].Outcome != gitops.Applied {
		t.Fatalf("gitops status %+v", st)
	}
}

func baseline(a []string, o, e *bytes.Buffer) int { return initBaseline(a, o, e) }
