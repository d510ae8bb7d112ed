package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ratatouille/rat/audit/policysig"
	"github.com/ratatouille/rat/evidence/runtimepolicy"
	"github.com/ratatouille/rat/hub/api"
	"github.com/ratatouille/rat/hub/server"
	"github.com/ratatouille/rat/hub/store"
	"github.com/ratatouille/rat/ota/rollout"
)

// TestReleaseCLI drives rat release against a running hub (real server,
// real HTTP API, key-signed Sigstore bundle): add from a --release-out
// record, gate before and after approval, list, retire.
func TestReleaseCLI(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	v, err := policysig.New(nil, policysig.WithPublicKey(k.Public()), policysig.WithoutTlogUnsafe())
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.Start(context.Background(), server.Config{Store: st, EmbeddedAddr: "127.0.0.1:0", StaleAfter: time.Hour,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		PolicyCheck: func(_ string, doc, bundle []byte) (*server.PolicyMeta, error) {
			res, err := v.Verify(doc, bundle)
			if err != nil {
				return nil, err
			}
			return &server.PolicyMeta{Signer: res.Signer()}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(); st.Close() })
	const token = "cli-operator-token-0123"
	a, err := api.New(srv, token)
	if err != nil {
		t.Fatal(err)
	}
	h := httptest.NewServer(a)
	t.Cleanup(h.Close)
	t.Setenv("RAT_HUB", h.URL)
	t.Setenv("RAT_TOKEN", token)
	t.Setenv("RAT_TOKEN_FILE", "")

	dir := t.TempDir()
	p, _ := runtimepolicy.FromEntries(nil, runtimepolicy.WithAllowlist(map[string][]string{"/usr/bin/app": {strings.Repeat("ab", 32)}}))
	doc, _ := p.Marshal()
	bundle, err := policysig.SignWithKey(context.Background(), doc, k)
	if err != nil {
		t.Fatal(err)
	}
	ps := sha256.Sum256(doc)
	rec, err := rollout.NewRelease("edge", "2026.12.1", strings.Repeat("cd", 32), hex.EncodeToString(ps[:]))
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := json.Marshal(rec)
	write := func(name string, b []byte) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	recF, polF, bunF := write("release.json", rb), write("policy.json", doc), write("policy.sigstore.json", bundle)

	for _, s := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"add", "--record", recF, "--policy", polF, "--bundle", bunF, "--by", "ci"}, 0, `"state": "draft"`},
		{[]string{"gate", "--group", "edge", "--version", "2026.12.1"}, 1, "approved=false state=draft"},
		{[]string{"approve", "--group", "edge", "--version", "2026.12.1", "--by", "owner"}, 0, `"state": "approved"`},
		{[]string{"gate", "--group", "edge", "--version", "2026.12.1"}, 0, "approved=true state=approved image=" + rec.ImageDigest},
		{[]string{"gate", "--group", "edge", "--version", "2026.12.2"}, 1, "unknown release"},
		{[]string{"list", "--group", "edge"}, 0, "2026.12.1  approved"},
		{[]string{"list", "--group", "edge"}, 0, "  owner  "},
		{[]string{"history", "--group", "edge", "--version", "2026.12.1"}, 0, "draft  approved  owner"},
		{[]string{"history", "--group", "edge", "--version", "2026.12.9"}, 1, ""},
		{[]string{"state", "--group", "edge", "--version", "2026.12.1", "--to", "retired", "--reason", "CVE"}, 0, `"state": "retired"`},
		{[]string{"history", "--group", "edge", "--version", "2026.12.1", "--json"}, 0, `"reason": "CVE"`},
		{[]string{"state", "--group", "edge", "--version", "2026.12.1", "--to", "complete"}, 1, ""},
		{[]string{"add", "--group", "edge", "--version", "x", "--policy", polF}, 2, ""},
	} {
		var out, errb bytes.Buffer
		if got := releaseCmd(s.args, &out, &errb); got != s.code {
			t.Fatalf("rat release %v: exit %d, want %d: %s%s", s.args, got, s.code, out.String(), errb.String())
		}
		if !strings.Contains(out.String(), s.out) {
			t.Fatalf("rat release %v: output %q lacks %q", s.args, out.String(), s.out)
		}
	}
}
