package gitops_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ratatouille/rat/audit/policysig"
	"github.com/ratatouille/rat/audit/policysig/policysigtest"
	"github.com/ratatouille/rat/evidence/runtimepolicy"
	"github.com/ratatouille/rat/hub/gitops"
)

var secret = []byte("0123456789abcdef-webhook-secret")

func requireGit(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("git")
	if err != nil {
		if os.Getenv("RAT_REQUIRE_INTEGRATION") == "1" {
			t.Fatal("git not installed and RAT_REQUIRE_INTEGRATION=1")
		}
		t.Skip("git not installed")
	}
	return p
}

// repo is a real working repository with a bare remote, driven by the
// git CLI as an operator would.
type repo struct {
	t      *testing.T
	work   string
	remote string
	home   string
}

func newRepo(t *testing.T) *repo {
	requireGit(t)
	d := t.TempDir()
	r := &repo{t: t, work: filepath.Join(d, "work"), remote: filepath.Join(d, "policies.git"), home: d}
	r.git(d, "init", "-q", "--bare", "-b", "main", r.remote)
	r.git(d, "init", "-q", "-b", "main", r.work)
	r.git(r.work, "remote", "add", "origin", r.remote)
	return r
}

func (r *repo) git(dir string, args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+r.home, "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Policy Admin", "GIT_AUTHOR_EMAIL=admin@example.com",
		"GIT_COMMITTER_NAME=Policy Admin", "GIT_COMMITTER_EMAIL=admin@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func (r *repo) write(rel string, b []byte) {
	r.t.Helper()
	p := filepath.Join(r.work, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// commitPush commits everything and pushes main; it returns the commit.
func (r *repo) commitPush(msg string) string {
	r.t.Helper()
	r.git(r.work, "add", "-A")
	r.git(r.work, "commit", "-q", "-m", msg)
	r.git(r.work, "push", "-q", "origin", "main")
	return r.git(r.work, "rev-parse", "HEAD")
}

// policyDoc is a valid Keylime runtime policy allowing one file digest.
func policyDoc(t *testing.T, digest byte) []byte {
	t.Helper()
	p, err := runtimepolicy.FromEntries(nil, runtimepolicy.WithAllowlist(map[string][]string{"/usr/bin/app": {strings.Repeat(fmt.Sprintf("%02x", digest), 32)}}))
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func signDoc(t *testing.T, k *ecdsa.PrivateKey, doc []byte) []byte {
	t.Helper()
	b, err := policysig.SignWithKey(context.Background(), doc, k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// recorder collects the callbacks.
type recorder struct {
	mu       sync.Mutex
	applied  []gitops.Update
	rejected []gitops.Rejection
}

func (rc *recorder) apply(_ context.Context, u gitops.Update) error {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.applied = append(rc.applied, u)
	return nil
}

func (rc *recorder) reject(_ context.Context, r gitops.Rejection) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.rejected = append(rc.rejected, r)
}

func (rc *recorder) counts() (int, int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.applied), len(rc.rejected)
}

func keyVerifier(t *testing.T, k *ecdsa.PrivateKey) *policysig.Verifier {
	t.Helper()
	v, err := policysig.New(nil, policysig.WithPublicKey(k.Public()), policysig.WithoutTlogUnsafe())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// githubPush is a push event in GitHub's payload shape (trimmed of
// fields nobody reads, but with the ones GitHub always sends).
func githubPush(ref, before, after string) []byte {
	ev := map[string]any{
		"ref": ref, "before": before, "after": after,
		"created": false, "deleted": false, "forced": false, "base_ref": nil,
		"compare": "https://github.com/acme/policies/compare/" + before[:12] + "..." + after[:12],
		"commits": []map[string]any{{
			"id": after, "tree_id": strings.Repeat("1", 40), "distinct": true, "message": "policy update",
			"timestamp": "2026-12-03T09:00:00Z", "url": "https://github.com/acme/policies/commit/" + after,
			"author":    map[string]string{"name": "Policy Admin", "email": "admin@example.com", "username": "admin"},
			"committer": map[string]string{"name": "Policy Admin", "email": "admin@example.com", "username": "admin"},
			"added":     []string{}, "removed": []string{}, "modified": []string{"groups/edge/runtime_policy.json"},
		}},
		"head_commit": map[string]any{"id": after, "message": "policy update"},
		"repository": map[string]any{
			"id": 123456789, "node_id": "R_kgDOExample", "name": "policies", "full_name": "acme/policies",
			"private": true, "owner": map[string]any{"login": "acme", "id": 42, "type": "Organization"},
			"html_url": "https://github.com/acme/policies", "clone_url": "https://github.com/acme/policies.git",
			"default_branch": "main", "master_branch": "main",
		},
		"pusher": map[string]string{"name": "admin", "email": "admin@example.com"},
		"sender": map[string]any{"login": "admin", "id": 7, "type": "User"},
	}
	b, _ := json.Marshal(ev)
	return b
}

func githubSig(body, key []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func post(t *testing.T, h http.Handler, hdr map[string]string, body []byte) (int, gitops.Status, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, gitops.WebhookPath, bytes.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rw := httptest.NewRecorder()
	h.ServeHTTP(rw, req)
	var st gitops.Status
	_ = json.Unmarshal(rw.Body.Bytes(), &st)
	return rw.Code, st, rw.Body.String()
}

func ghHeaders(body []byte, key []byte) map[string]string {
	return map[string]string{"X-GitHub-Event": "push", "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
		"Content-Type": "application/json", "X-Hub-Signature-256": githubSig(body, key)}
}

// TestWebhookLifecycle walks one repository through a policy's life:
// signed push, replayed push, unsigned change, wrong signer, rollback by
// git revert, a late webhook for an old commit.
func TestWebhookLifecycle(t *testing.T) {
	r := newRepo(t)
	admin, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	mallory, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	v1, v2, v3 := policyDoc(t, 1), policyDoc(t, 2), policyDoc(t, 3)

	r.write("README.md", []byte("policies\n"))
	c0 := r.commitPush("init")
	r.write("groups/edge/runtime_policy.json", v1)
	r.write("groups/edge/runtime_policy.json.sigstore.json", signDoc(t, admin, v1))
	c1 := r.commitPush("edge: v1")

	rc := &recorder{}
	s, err := gitops.New(r.remote, map[string]*policysig.Verifier{"edge": keyVerifier(t, admin)}, rc.apply, gitops.WithReject(rc.reject))
	if err != nil {
		t.Fatal(err)
	}
	h, err := gitops.NewWebhook(s, secret)
	if err != nil {
		t.Fatal(err)
	}
	push := func(before, after string) (int, gitops.Status, string) {
		body := githubPush("refs/heads/main", before, after)
		return post(t, h, ghHeaders(body, secret), body)
	}

	// 1. signed v1
	code, st, raw := push(c0, c1)
	if code != 200 || len(st.Groups) != 1 || st.Groups[0].Outcome != gitops.Applied || st.Commit != c1 {
		t.Fatalf("v1 push: %d %s", code, raw)
	}
	u := rc.applied[0]
	if u.Group != "edge" || u.Commit != c1 || !bytes.Equal(u.Policy, v1) || u.Result.Digest != digestOf(v1) || u.PolicyPath != "groups/edge/runtime_policy.json" || len(u.Bundle) == 0 || !u.Result.KeySigned {
		t.Fatalf("update: %+v", u)
	}

	// 2. the same push again: same digest, callback not called again
	code, st, raw = push(c0, c1)
	if code != 200 || st.Groups[0].Outcome != gitops.Unchanged || st.Groups[0].Digest != digestOf(v1) {
		t.Fatalf("replayed push: %d %s", code, raw)
	}
	if a, _ := rc.counts(); a != 1 {
		t.Fatalf("apply called %d times", a)
	}

	// 3. unsigned change: the old bundle no longer matches
	r.write("groups/edge/runtime_policy.json", v2)
	c2 := r.commitPush("edge: v2 without re-signing")
	code, st, raw = push(c1, c2)
	if code != 200 || st.Groups[0].Outcome != gitops.Rejected || !strings.Contains(st.Groups[0].Reason, "verification failed") {
		t.Fatalf("unsigned push: %d %s", code, raw)
	}
	// and with the bundle removed
	r.git(r.work, "rm", "-q", "groups/edge/runtime_policy.json.sigstore.json")
	c3 := r.commitPush("edge: drop signature")
	code, st, raw = push(c2, c3)
	if code != 200 || st.Groups[0].Outcome != gitops.Rejected || !strings.HasPrefix(st.Groups[0].Reason, "unsigned") {
		t.Fatalf("bundle-less push: %d %s", code, raw)
	}

	// 4. signed by someone else
	r.write("groups/edge/runtime_policy.json", v3)
	r.write("groups/edge/runtime_policy.json.sigstore.json", signDoc(t, mallory, v3))
	c4 := r.commitPush("edge: v3 by mallory")
	code, st, raw = push(c3, c4)
	if code != 200 || st.Groups[0].Outcome != gitops.Rejected {
		t.Fatalf("mallory push: %d %s", code, raw)
	}
	if a, rj := rc.counts(); a != 1 || rj != 3 {
		t.Fatalf("after rejections: %d applied, %d rejected", a, rj)
	}
	if rj := rc.rejected[2]; rj.Group != "edge" || rj.Commit != c4 || rj.Digest != digestOf(v3) || rj.Err == nil || !bytes.Equal(rj.Policy, v3) || len(rj.Bundle) == 0 {
		t.Fatalf("rejection record: %+v", rj)
	}

	// 5. a properly signed v2
	r.write("groups/edge/runtime_policy.json", v2)
	r.write("groups/edge/runtime_policy.json.sigstore.json", signDoc(t, admin, v2))
	c5 := r.commitPush("edge: v2 signed")
	if code, st, raw = push(c4, c5); code != 200 || st.Groups[0].Outcome != gitops.Applied || st.Groups[0].Digest != digestOf(v2) {
		t.Fatalf("v2 push: %d %s", code, raw)
	}

	// 6. rollback: git revert back to the signed v1 files
	r.git(r.work, "checkout", "-q", c1, "--", "groups/edge")
	c6 := r.commitPush("edge: roll back to v1")
	if code, st, raw = push(c5, c6); code != 200 || st.Groups[0].Outcome != gitops.Applied || st.Groups[0].Digest != digestOf(v1) {
		t.Fatalf("rollback push: %d %s", code, raw)
	}

	// 7. a late (or replayed) webhook for c5 must not undo the rollback
	code, st, raw = push(c4, c5)
	if code != 200 || !st.Stale || st.Tip != c6 || len(st.Groups) != 0 {
		t.Fatalf("stale push: %d %s", code, raw)
	}
	if a, _ := rc.counts(); a != 3 || rc.applied[2].Commit != c6 {
		t.Fatalf("applied %d", a)
	}
}

// TestWebhookAuthentication: every refusal before the fetch, and the
// other forges' headers.
func TestWebhookAuthentication(t *testing.T) {
	r := newRepo(t)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	doc := policyDoc(t, 1)
	r.write("groups/edge/runtime_policy.json", doc)
	r.write("groups/edge/runtime_policy.json.sigstore.json", signDoc(t, k, doc))
	c1 := r.commitPush("v1")

	// Served over real https by git http-backend, counting requests, so
	// "nothing fetched" is observable.
	var hits atomic.Int64
	backend := &cgi.Handler{Path: filepath.Join(r.git(r.work, "--exec-path"), "git-http-backend"),
		Env: []string{"GIT_PROJECT_ROOT=" + filepath.Dir(r.remote), "GIT_HTTP_EXPORT_ALL=1"}}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		hits.Add(1)
		backend.ServeHTTP(w, req)
	}))
	defer srv.Close()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})

	rc := &recorder{}
	s, err := gitops.New(srv.URL+"/policies.git", map[string]*policysig.Verifier{"edge": keyVerifier(t, k)}, rc.apply, gitops.WithCABundle(ca))
	if err != nil {
		t.Fatal(err)
	}
	h, err := gitops.NewWebhook(s, secret)
	if err != nil {
		t.Fatal(err)
	}
	body := githubPush("refs/heads/main", strings.Repeat("0", 40), c1)
	wrong := ghHeaders(body, []byte("not-the-secret-at-all"))
	noSig := map[string]string{"X-GitHub-Event": "push"}
	gitea := map[string]string{"X-Gitea-Event": "push", "X-Gitea-Signature": strings.TrimPrefix(githubSig(body, secret), "sha256=")}
	gitlab := map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": string(secret)}
	gitlabWrong := map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "guess"}
	tampered := append(append([]byte{}, body[:len(body)-1]...), []byte(`,"x":1}`)...)
	otherBranch := githubPush("refs/heads/feature", strings.Repeat("0", 40), c1)
	unknown := githubPush("refs/heads/main", c1, strings.Repeat("ab", 20))
	ping := []byte(`{"zen":"Keep it logically awesome.","hook_id":1}`)

	cases := []struct {
		name    string
		method  string
		hdr     map[string]string
		body    []byte
		code    int
		fetches bool
	}{
		{name: "wrong HMAC", hdr: wrong, body: body, code: 401},
		{name: "no signature", hdr: noSig, body: body, code: 401},
		{name: "signature over other body", hdr: ghHeaders(body, secret), body: tampered, code: 401},
		{name: "GitLab wrong token", hdr: gitlabWrong, body: body, code: 401},
		{name: "GET", method: http.MethodGet, hdr: ghHeaders(body, secret), body: body, code: 405},
		{name: "ping", hdr: map[string]string{"X-GitHub-Event": "ping", "X-Hub-Signature-256": githubSig(ping, secret)}, body: ping, code: 200},
		{name: "other branch", hdr: ghHeaders(otherBranch, secret), body: otherBranch, code: 202},
		{name: "not JSON", hdr: ghHeaders([]byte("{"), secret), body: []byte("{"), code: 400},
		{name: "GitHub push", hdr: ghHeaders(body, secret), body: body, code: 200, fetches: true},
		{name: "Gitea push", hdr: gitea, body: body, code: 200, fetches: true},
		{name: "GitLab push", hdr: gitlab, body: body, code: 200, fetches: true},
		{name: "commit not in repository", hdr: ghHeaders(unknown, secret), body: unknown, code: 502, fetches: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := hits.Load()
			m := c.method
			if m == "" {
				m = http.MethodPost
			}
			req := httptest.NewRequest(m, gitops.WebhookPath, bytes.NewReader(c.body))
			for k, v := range c.hdr {
				req.Header.Set(k, v)
			}
			rw := httptest.NewRecorder()
			h.ServeHTTP(rw, req)
			if rw.Code != c.code {
				t.Fatalf("code %d, want %d: %s", rw.Code, c.code, rw.Body)
			}
			if fetched := hits.Load() > before; fetched != c.fetches {
				t.Fatalf("fetched=%v, want %v", fetched, c.fetches)
			}
		})
	}
	if a, _ := rc.counts(); a != 1 {
		t.Fatalf("applied %d times over three authenticated pushes of one commit, want 1", a)
	}
	if _, err := gitops.NewWebhook(s, []byte("short")); err == nil {
		t.Fatal("short secret accepted")
	}
}

// TestLayouts: several groups, the seed's single-group layout, a group
// without signer config, a symlinked policy and a signed non-policy.
func TestLayouts(t *testing.T) {
	r := newRepo(t)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edge, core, seed := policyDoc(t, 1), policyDoc(t, 2), policyDoc(t, 3)
	notPolicy := []byte(`{"hello":"world"}`)
	r.write("groups/edge/runtime_policy.json", edge)
	r.write("groups/edge/runtime_policy.json.sigstore.json", signDoc(t, k, edge))
	r.write("groups/core/runtime_policy.json", core)
	r.write("groups/core/runtime_policy.json.sigstore.json", signDoc(t, k, core))
	r.write("groups/lab/runtime_policy.json", edge) // no verifier for lab
	r.write("groups/lab/runtime_policy.json.sigstore.json", signDoc(t, k, edge))
	r.write("groups/junk/runtime_policy.json", notPolicy)
	r.write("groups/junk/runtime_policy.json.sigstore.json", signDoc(t, k, notPolicy))
	r.write("runtime/runtime_policy.json", seed)
	r.write("runtime/artifact.sigstore.json", signDoc(t, k, seed))
	r.write("outside.json", edge)
	r.write("groups/link/runtime_policy.json.sigstore.json", signDoc(t, k, edge))
	if err := os.Symlink("../../outside.json", filepath.Join(r.work, "groups/link/runtime_policy.json")); err != nil {
		t.Fatal(err)
	}
	c1 := r.commitPush("all layouts")

	v := keyVerifier(t, k)
	rc := &recorder{}
	s, err := gitops.New("file://"+r.remote, map[string]*policysig.Verifier{"edge": v, "core": v, "seed": v, "junk": v, "link": v}, rc.apply,
		gitops.WithReject(rc.reject), gitops.WithSingleGroup("seed"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Sync(context.Background(), c1)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]gitops.GroupStatus{}
	for _, g := range st.Groups {
		got[g.Group] = g
	}
	want := map[string]struct {
		outcome gitops.Outcome
		reason  string
		digest  string
	}{
		"edge": {gitops.Applied, "", digestOf(edge)},
		"core": {gitops.Applied, "", digestOf(core)},
		"seed": {gitops.Applied, "", digestOf(seed)},
		"lab":  {gitops.Rejected, "no signer policy", digestOf(edge)},
		"junk": {gitops.Rejected, "signed but invalid runtime policy", digestOf(notPolicy)},
		"link": {gitops.Rejected, "not a regular file", ""},
	}
	if len(got) != len(want) {
		t.Fatalf("groups: %+v", st.Groups)
	}
	for g, w := range want {
		if got[g].Outcome != w.outcome || !strings.Contains(got[g].Reason, w.reason) || got[g].Digest != w.digest {
			t.Errorf("%s: %+v, want %+v", g, got[g], w)
		}
	}
	if got["seed"].PolicyPath != "runtime/runtime_policy.json" {
		t.Errorf("seed path %s", got["seed"].PolicyPath)
	}
	if a, rj := rc.counts(); a != 3 || rj != 3 {
		t.Fatalf("%d applied, %d rejected", a, rj)
	}
	for _, bad := range []string{"", "HEAD", "main", strings.Repeat("g", 40), c1[:12]} {
		if _, err := s.Sync(context.Background(), bad); err == nil {
			t.Errorf("Sync(%q) accepted", bad)
		}
	}
}

// TestPolling: PollOnce applies the tip once, then nothing until a new
// push; Poll runs the same until its context ends.
func TestPolling(t *testing.T) {
	r := newRepo(t)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	v1, v2 := policyDoc(t, 1), policyDoc(t, 2)
	r.write("groups/edge/runtime_policy.json", v1)
	r.write("groups/edge/runtime_policy.json.sigstore.json", signDoc(t, k, v1))
	c1 := r.commitPush("v1")

	rc := &recorder{}
	s, err := gitops.New(r.remote, map[string]*policysig.Verifier{"edge": keyVerifier(t, k)}, rc.apply,
		gitops.WithApplied(map[string]string{"edge": digestOf(v1)})) // the hub already has v1
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := s.PollOnce(ctx)
	if err != nil || st == nil || st.Commit != c1 || st.Groups[0].Outcome != gitops.Unchanged {
		t.Fatalf("first poll: %+v %v", st, err)
	}
	if st, err := s.PollOnce(ctx); err != nil || st != nil {
		t.Fatalf("poll without change: %+v %v", st, err)
	}
	r.write("groups/edge/runtime_policy.json", v2)
	r.write("groups/edge/runtime_policy.json.sigstore.json", signDoc(t, k, v2))
	c2 := r.commitPush("v2")

	pctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Poll(pctx, 10*time.Millisecond, func(err error) { t.Error(err) }) }()
	deadline := time.After(30 * time.Second) // a bound, not a speed assertion
	for {
		if a, _ := rc.counts(); a == 1 {
			break
		}
		select {
		case <-deadline:
			t.Fatal("poll never applied v2")
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	<-done
	if u := rc.applied[0]; u.Commit != c2 || u.Result.Digest != digestOf(v2) {
		t.Fatalf("polled update %+v", u)
	}
	if _, err := gitops.New("git://example.com/x", nil, rc.apply); err == nil {
		t.Fatal("git:// accepted")
	}
	if _, err := gitops.New("relative/path", nil, rc.apply); err == nil {
		t.Fatal("relative path accepted")
	}
}

// TestApplyFailureRetried: when the hub cannot store a verified policy,
// the group is "failed", nothing is remembered, and the next poll (same
// commit) or push tries again.
func TestApplyFailureRetried(t *testing.T) {
	r := newRepo(t)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	v1 := policyDoc(t, 1)
	r.write("groups/edge/runtime_policy.json", v1)
	r.write("groups/edge/runtime_policy.json.sigstore.json", signDoc(t, k, v1))
	c1 := r.commitPush("v1")
	calls := 0
	s, err := gitops.New(r.remote, map[string]*policysig.Verifier{"edge": keyVerifier(t, k)}, func(context.Context, gitops.Update) error {
		calls++
		if calls == 1 {
			return fmt.Errorf("store unavailable")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := s.Sync(ctx, c1)
	if err != nil || st.Groups[0].Outcome != gitops.Failed || !strings.Contains(st.Groups[0].Reason, "store unavailable") {
		t.Fatalf("first sync: %+v %v", st, err)
	}
	st, err = s.PollOnce(ctx)
	if err != nil || st == nil || st.Groups[0].Outcome != gitops.Applied {
		t.Fatalf("retry by poll: %+v %v", st, err)
	}
	if st, err := s.PollOnce(ctx); err != nil || st != nil || calls != 2 {
		t.Fatalf("after success: %+v %v calls=%d", st, err, calls)
	}
}

// TestKeylessGroup: a group that trusts one OIDC identity, with bundles
// from a virtual Sigstore (Fulcio certificate, Rekor entry, TSA): alice's
// push is applied with her identity and the log entry, mallory's is not.
func TestKeylessGroup(t *testing.T) {
	r := newRepo(t)
	vs, err := policysigtest.New()
	if err != nil {
		t.Fatal(err)
	}
	const issuer = "https://accounts.example.com"
	v, err := policysig.New(vs.TrustedMaterial(), policysig.WithIdentity(policysig.Identity{Issuer: issuer, SAN: "alice@example.com"}))
	if err != nil {
		t.Fatal(err)
	}
	v1, v2 := policyDoc(t, 1), policyDoc(t, 2)
	sign := func(who string, doc []byte) []byte {
		b, err := vs.SignBundle(who, issuer, doc, policysigtest.Parts{})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	rc := &recorder{}
	s, err := gitops.New(r.remote, map[string]*policysig.Verifier{"edge": v}, rc.apply, gitops.WithReject(rc.reject))
	if err != nil {
		t.Fatal(err)
	}
	h, err := gitops.NewWebhook(s, secret)
	if err != nil {
		t.Fatal(err)
	}
	r.write("groups/edge/runtime_policy.json", v1)
	r.write("groups/edge/runtime_policy.json.sigstore.json", sign("alice@example.com", v1))
	c1 := r.commitPush("v1 by alice")
	body := githubPush("refs/heads/main", strings.Repeat("0", 40), c1)
	if code, st, raw := post(t, h, ghHeaders(body, secret), body); code != 200 || st.Groups[0].Outcome != gitops.Applied || st.Groups[0].Signer != "alice@example.com" {
		t.Fatalf("alice: %d %s", code, raw)
	}
	res := rc.applied[0].Result
	logID, _ := vs.RekorLogID()
	if res.Identity != "alice@example.com" || res.Issuer != issuer || len(res.Tlog) != 1 || res.Tlog[0].LogID != logID || res.IntegratedTime.IsZero() {
		t.Fatalf("result %+v", res)
	}
	r.write("groups/edge/runtime_policy.json", v2)
	r.write("groups/edge/runtime_policy.json.sigstore.json", sign("mallory@example.com", v2))
	c2 := r.commitPush("v2 by mallory")
	body = githubPush("refs/heads/main", c1, c2)
	if code, st, raw := post(t, h, ghHeaders(body, secret), body); code != 200 || st.Groups[0].Outcome != gitops.Rejected || !strings.Contains(st.Groups[0].Reason, "signer not allowed") {
		t.Fatalf("mallory: %d %s", code, raw)
	}
	if a, rj := rc.counts(); a != 1 || rj != 1 {
		t.Fatalf("%d applied, %d rejected", a, rj)
	}
}
