package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ratatouille/rat/audit/policysig"
	"github.com/ratatouille/rat/device/agent"
	"github.com/ratatouille/rat/device/imasim"
	"github.com/ratatouille/rat/device/imasrc"
	"github.com/ratatouille/rat/device/outbox"
	"github.com/ratatouille/rat/evidence/ima"
	"github.com/ratatouille/rat/evidence/runtimepolicy"
	"github.com/ratatouille/rat/hub/api"
	"github.com/ratatouille/rat/hub/server"
	"github.com/ratatouille/rat/hub/store"
	"github.com/ratatouille/rat/hub/verifier"
)

func gitRun(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=op", "GIT_AUTHOR_EMAIL=op@example.org", "GIT_COMMITTER_NAME=op", "GIT_COMMITTER_EMAIL=op@example.org")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestGitOpsSignedPush runs the hub as `rat-hub serve --signers ... --git-repo
// ... --git-webhook-secret-file ...` wires it, with the real agent on the
// TPM simulator: a device turns UNTRUSTED; the operator commits a policy
// signed with the group's key and GitHub calls the webhook → the hub fetches
// that commit, verifies the signature and re-judges the device → TRUSTED.
// Then an unsigned change is pushed → recorded as rejected, the device's
// policy does not change.
func TestGitOpsSignedPush(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		if os.Getenv("RAT_REQUIRE_INTEGRATION") != "" {
			t.Fatal("git is required")
		}
		t.Skip("no git")
	}
	dir := t.TempDir()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	// The operator's signing key and the hub's signer config for group g.
	opKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pubDER, _ := x509.MarshalPKIXPublicKey(&opKey.PublicKey)
	signers, _ := json.Marshal(map[string]any{"groups": map[string]any{"g": map[string]any{
		"public_keys":                  []string{string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}))},
		"key_only_without_tlog_unsafe": true,
	}}})
	signersPath := filepath.Join(dir, "signers.json")
	secretPath := filepath.Join(dir, "webhook.secret")
	const secret = "webhook-secret-0123456789abcdef"
	repo := filepath.Join(dir, "policies")
	for p, b := range map[string][]byte{signersPath: signers, secretPath: []byte(secret + "\n")} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(repo, "groups", "g"), 0o755); err != nil {
		t.Fatal(err)
	}
	gitRun(t, repo, "init", "-q", "-b", "main")
	gitRun(t, repo, "commit", "-q", "--allow-empty", "-m", "empty")

	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	for _, f := range serveFlags {
		f(fs)
	}
	if err := fs.Parse([]string{"--signers", signersPath, "--git-repo", repo, "--git-webhook-secret-file", secretPath}); err != nil {
		t.Fatal(err)
	}

	dev := newSimDevice(t)
	st, err := store.OpenBolt(filepath.Join(dir, "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg := server.Config{Store: st, Verifier: verifier.Config{EKRoots: dev.ekRoot}, EmbeddedAddr: "127.0.0.1:0", StaleAfter: time.Hour, Log: quiet}
	if err := configurePolicyCheck(&cfg); err != nil {
		t.Fatal(err)
	}
	srv, err := server.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	a, err := api.New(srv, testOperatorToken)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := startGitOps(ctx, &hubRuntime{Server: srv, API: a, Store: st, DataDir: dir, Log: quiet}); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(a)
	defer hs.Close()

	// The device boots with one approved file and enrolls with a baseline.
	logPath := filepath.Join(dir, "ima.bin")
	ms, err := imasim.Open(dev.tp, logPath)
	if err != nil {
		t.Fatal(err)
	}
	ob, err := outbox.Open(filepath.Join(dir, "outbox.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	ag, err := agent.New(agent.Config{DeviceID: "edge", Fleet: "default", Group: "g", Broker: srv.BrokerURL(), TPM: dev.tp,
		IMA: imasrc.NewFile(logPath), Outbox: ob, BootID: func() (string, error) { return "boot-1", nil },
		EventLog: func() ([]byte, error) { return dev.evLog, nil }, Baseline: true,
		Poll: 20 * time.Millisecond, Heartbeat: 100 * time.Millisecond, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer ag.Close()
	done := make(chan error, 1)
	go func() { done <- ag.Run(ctx) }()
	defer func() { cancel(); <-done }()
	const key = "default/edge"
	waitStore(t, st, key, store.Trusted)
	if _, err := ms.Measure(bytes.Repeat([]byte{7}, 32), "/usr/bin/new-tool"); err != nil {
		t.Fatal(err)
	}
	waitStore(t, st, key, store.Untrusted)

	push := func(sha string) (int, string) {
		body, _ := json.Marshal(map[string]any{"ref": "refs/heads/main", "after": sha, "before": strings.Repeat("0", 40),
			"repository": map[string]any{"full_name": "fleet/policies"}})
		m := hmac.New(sha256.New, []byte(secret))
		m.Write(body)
		req, _ := http.NewRequest(http.MethodPost, hs.URL+"/v1/webhooks/git", bytes.NewReader(body))
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(m.Sum(nil)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	commitPolicy := func(doc, bundle []byte, msg string) string {
		if err := os.WriteFile(filepath.Join(repo, "groups/g/runtime_policy.json"), doc, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(repo, "groups/g/runtime_policy.json.sigstore.json"), bundle, 0o644); err != nil {
			t.Fatal(err)
		}
		gitRun(t, repo, "add", "groups")
		gitRun(t, repo, "commit", "-q", "-m", msg)
		return gitRun(t, repo, "rev-parse", "HEAD")
	}

	// A wrong HMAC is refused before anything is fetched.
	entries, err := ima.ParseBinary(mustRead(t, logPath))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := runtimepolicy.FromEntries(entries)
	doc, _ := p.Marshal()
	bundle, err := policysig.SignWithKey(context.Background(), doc, opKey)
	if err != nil {
		t.Fatal(err)
	}
	sha := commitPolicy(doc, bundle, "approve new-tool")
	req, _ := http.NewRequest(http.MethodPost, hs.URL+"/v1/webhooks/git", strings.NewReader(`{"ref":"refs/heads/main","after":"`+sha+`"}`))
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-Hub-Signature-256", "sha256="+strings.Repeat("0", 64))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong HMAC: %v %v", err, resp)
	}
	if d, _ := st.Device(key); d.State != store.Untrusted {
		t.Fatal("a webhook with a wrong HMAC changed the device")
	}

	// The signed push: verified, activated, the device re-judged.
	if code, body := push(sha); code != http.StatusOK {
		t.Fatalf("signed push: %d %s", code, body)
	}
	d := waitStore(t, st, key, store.Trusted)
	active, err := st.ActivePolicy("g")
	if err != nil || active.Commit != sha || active.Source != "git:groups/g/runtime_policy.json" || active.Signer == "" {
		t.Fatalf("active policy: %v %+v", err, active)
	}

	// An unsigned change (the old bundle over new bytes) is rejected and
	// changes nothing.
	p.Digests["/usr/bin/backdoor"] = []string{strings.Repeat("ab", 32)}
	doc2, _ := p.Marshal()
	sha2 := commitPolicy(doc2, bundle, "sneak a backdoor in")
	push(sha2)
	if cur, _ := st.ActivePolicy("g"); cur.Digest != active.Digest {
		t.Fatal("an unsigned policy became active")
	}
	ps, _ := st.Policies("g")
	rejected := false
	for _, q := range ps {
		if q.Status == "rejected" && q.Commit == sha2 {
			rejected = true
		}
	}
	if !rejected {
		t.Fatalf("the unsigned commit is not recorded as rejected: %+v", ps)
	}
	if d2, _ := st.Device(key); d2.State != store.Trusted || d2.PolicyDigest != d.PolicyDigest {
		t.Fatalf("device changed by a rejected policy: %s %s", d2.State, d2.PolicyDigest)
	}
}
