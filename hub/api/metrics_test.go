package api_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ratatouille/rat/hub/api"
	"github.com/ratatouille/rat/hub/server"
	"github.com/ratatouille/rat/hub/store"
)

// TestMetricsDeviceStates: /metrics counts the stored devices by state,
// every state listed (zero included), and follows a state change.
func TestMetricsDeviceStates(t *testing.T) {
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	for i, state := range []string{store.Trusted, store.Trusted, store.Untrusted, store.Stale} {
		id := fmt.Sprintf("d%d", i)
		if err := st.Save(&store.Device{Key: "default/" + id, ID: id, Fleet: "default", Group: "g", State: state, LastVerified: time.Now().UTC()}, nil, 0, nil); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := server.Start(context.Background(), server.Config{Store: st, EmbeddedAddr: "127.0.0.1:0", StaleAfter: time.Hour,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(); st.Close() })
	a, err := api.New(srv, operator)
	if err != nil {
		t.Fatal(err)
	}
	h := httptest.NewServer(a)
	t.Cleanup(h.Close)
	scrape := func() string {
		t.Helper()
		req, _ := http.NewRequest("GET", h.URL+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+operator)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("/metrics: %d %s", resp.StatusCode, b)
		}
		return string(b)
	}
	want := func(body string, counts map[string]int) {
		t.Helper()
		for state, n := range counts {
			if line := fmt.Sprintf("rat_hub_devices{state=%q} %d\n", state, n); !strings.Contains(body, line) {
				t.Errorf("no %q in\n%s", line, body)
			}
		}
	}
	want(scrape(), map[string]int{store.Trusted: 2, store.Untrusted: 1, store.Stale: 1, store.Enrolling: 0, store.Decommissioned: 0})
	if err := srv.Decommission("default/d0", "retired"); err != nil {
		t.Fatal(err)
	}
	want(scrape(), map[string]int{store.Trusted: 1, store.Untrusted: 1, store.Stale: 1, store.Enrolling: 0, store.Decommissioned: 1})
}
