package api_test

import (
	"bytes"
	"context"
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

	"github.com/ratatouille/rat/evidence/runtimepolicy"
	"github.com/ratatouille/rat/hub/api"
	"github.com/ratatouille/rat/hub/server"
	"github.com/ratatouille/rat/hub/store"
)

// FuzzAddRelease feeds arbitrary bodies to POST /v1/groups/{g}/releases:
// the handler never panics, and whatever it accepts (201) is stored as a
// draft whose policy digest is the sha256 of the stored policy bytes.
func FuzzAddRelease(f *testing.F) {
	doc, err := runtimepolicy.Empty().Marshal()
	if err != nil {
		f.Fatal(err)
	}
	valid, _ := json.Marshal(map[string]any{"version": "1.0", "image_digest": hex.EncodeToString(make([]byte, 32)), "policy_base64": doc})
	f.Add(valid)
	f.Add([]byte(`{"version":"a/b","image_digest":"zz","policy_base64":"e30="}`))
	f.Add([]byte(`{"version":"","policy_base64":null}`))
	f.Add([]byte(`[1,2`))
	f.Add([]byte(`{"version":" x","image_digest":"","policy_base64":"AAAA","bundle_base64":"AAAA","by":""}`))
	st, err := store.OpenBolt(filepath.Join(f.TempDir(), "hub.db"))
	if err != nil {
		f.Fatal(err)
	}
	srv, err := server.Start(context.Background(), server.Config{Store: st, EmbeddedAddr: "127.0.0.1:0", StaleAfter: time.Hour,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { srv.Close(); st.Close() })
	a, err := api.New(srv, operator)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/v1/groups/fuzz/releases", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+operator)
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, req)
		if rec.Code != http.StatusCreated {
			return
		}
		var got struct {
			Version string `json:"version"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			t.Fatalf("201 with a body that does not decode: %v", err)
		}
		r, err := srv.ReleaseOf("fuzz", got.Version)
		if err != nil {
			t.Fatalf("accepted release %q not stored: %v", got.Version, err)
		}
		sum := sha256.Sum256(r.Policy)
		if r.State != "draft" || r.PolicyDigest != hex.EncodeToString(sum[:]) {
			t.Fatalf("stored %+v", r.Release)
		}
	})
}
