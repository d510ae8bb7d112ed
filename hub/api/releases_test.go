package api_test

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
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/ratatouille/rat/audit/policysig"
	"github.com/ratatouille/rat/evidence/runtimepolicy"
	"github.com/ratatouille/rat/hub/api"
	"github.com/ratatouille/rat/hub/server"
	"github.com/ratatouille/rat/hub/store"
	"github.com/ratatouille/rat/hub/verifier"
	"github.com/ratatouille/rat/ota/rollout"
)

const (
	operator = "operator-token-0123456789"
	gateTok  = "gate-token-0123456789abc"
)

// TestReleaseRoutes: who may call which release route, and what the gate
// answers, over HTTP against a running hub whose policy check is a real
// Sigstore bundle verification (key-signed).
func TestReleaseRoutes(t *testing.T) {
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
	a, err := api.New(srv, operator)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.SetGateToken(gateTok); err != nil {
		t.Fatal(err)
	}
	h := httptest.NewServer(a)
	t.Cleanup(h.Close)

	p, err := runtimepolicy.FromEntries(nil, runtimepolicy.WithAllowlist(map[string][]string{"/usr/bin/app": {hexSum("app")}}))
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := p.Marshal()
	bundle, err := policysig.SignWithKey(context.Background(), doc, k)
	if err != nil {
		t.Fatal(err)
	}
	add := func(version string, bundle []byte) []byte {
		b, _ := json.Marshal(map[string]any{"version": version, "image_digest": hexSum("image " + version), "policy_base64": doc, "bundle_base64": bundle, "by": "ci"})
		return b
	}

	steps := []struct {
		name, method, path, token string
		body                      []byte
		code                      int
		approved                  *bool
	}{
		{"register without a token", "POST", "/v1/groups/edge/releases", "", add("1.0", bundle), 401, nil},
		{"register with the gate token", "POST", "/v1/groups/edge/releases", gateTok, add("1.0", bundle), 401, nil},
		{"register", "POST", "/v1/groups/edge/releases", operator, add("1.0", bundle), 201, nil},
		{"register again", "POST", "/v1/groups/edge/releases", operator, add("1.0", bundle), 409, nil},
		{"register unsigned", "POST", "/v1/groups/edge/releases", operator, add("1.1", nil), 201, nil},
		{"register a bad digest", "POST", "/v1/groups/edge/releases", operator, []byte(`{"version":"x","image_digest":"zz","policy_base64":"e30="}`), 400, nil},
		{"gate without a token", "GET", "/v1/groups/edge/releases/1.0", "", nil, 401, nil},
		{"gate on a draft", "GET", "/v1/groups/edge/releases/1.0", gateTok, nil, 403, ptr(false)},
		{"approve with the gate token", "POST", "/v1/groups/edge/releases/1.0/approve", gateTok, nil, 401, nil},
		{"approve", "POST", "/v1/groups/edge/releases/1.0/approve", operator, []byte(`{"by":"owner","reason":"signed"}`), 200, nil},
		{"approve unsigned", "POST", "/v1/groups/edge/releases/1.1/approve", operator, nil, 403, nil},
		{"gate on approved", "GET", "/v1/groups/edge/releases/1.0", gateTok, nil, 200, ptr(true)},
		{"gate with the operator token", "GET", "/v1/groups/edge/releases/1.0", operator, nil, 200, ptr(true)},
		{"gate on unknown", "GET", "/v1/groups/edge/releases/9.9", gateTok, nil, 404, ptr(false)},
		{"gate on an escaped slash in the group", "GET", "/v1/groups/edge%2F1.0/releases/x", gateTok, nil, 404, ptr(false)},
		{"list with the gate token", "GET", "/v1/groups/edge/releases", gateTok, nil, 401, nil},
		{"list", "GET", "/v1/groups/edge/releases", operator, nil, 200, nil},
		{"rolling out", "POST", "/v1/groups/edge/releases/1.0/state", operator, []byte(`{"state":"rolling-out","by":"hawkbit"}`), 200, nil},
		{"back to draft", "POST", "/v1/groups/edge/releases/1.0/state", operator, []byte(`{"state":"draft"}`), 400, nil},
		{"retire", "POST", "/v1/groups/edge/releases/1.0/state", operator, []byte(`{"state":"retired","reason":"CVE"}`), 200, nil},
		{"gate on retired", "GET", "/v1/groups/edge/releases/1.0", gateTok, nil, 403, ptr(false)},
	}
	for _, s := range steps {
		req, _ := http.NewRequest(s.method, h.URL+s.path, bytes.NewReader(s.body))
		if s.token != "" {
			req.Header.Set("Authorization", "Bearer "+s.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != s.code {
			t.Fatalf("%s: %d, want %d: %s", s.name, resp.StatusCode, s.code, body)
		}
		if s.approved != nil {
			var ans rollout.GateAnswer
			if err := json.Unmarshal(body, &ans); err != nil {
				t.Fatalf("%s: %v: %s", s.name, err, body)
			}
			if ans.Approved != *s.approved || (ans.Approved && ans.PolicyDigest != verifier.PolicyDigest(doc)) {
				t.Fatalf("%s: %+v", s.name, ans)
			}
		}
	}
	r, err := srv.ReleaseOf("edge", "1.0")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.History) != 4 || r.History[3].To != rollout.Retired || r.History[3].Reason != "CVE" || r.History[2].By != "hawkbit" {
		t.Fatalf("history %+v", r.History)
	}
}

func ptr(b bool) *bool { return &b }

func hexSum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
