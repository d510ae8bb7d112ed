package server

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/ratatouille/rat/hub/store"
	"github.com/ratatouille/rat/hub/verifier"
)

// TestStaleIndex drives the index with explicit times: a device is
// proposed once its last verification is more than the period old, not
// before; verifying again moves its deadline; a device that is not TRUSTED
// is never proposed; a proposed device is proposed again only after it is
// noted again.
func TestStaleIndex(t *testing.T) {
	const after = 30 * time.Second
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	type note struct {
		key, state string
		last       time.Duration // after t0
	}
	type step struct {
		notes []note
		at    time.Duration // expired(t0 + at)
		want  []string
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"silent device, exactly at the period then just after", []step{
			{notes: []note{{"a", store.Trusted, 0}}, at: after, want: nil},
			{at: after + time.Nanosecond, want: []string{"a"}},
			{at: 10 * after, want: nil},
		}},
		{"verifying device is never proposed", []step{
			{notes: []note{{"a", store.Trusted, 0}}, at: 20 * time.Second},
			{notes: []note{{"a", store.Trusted, 20 * time.Second}}, at: 40 * time.Second},
			{notes: []note{{"a", store.Trusted, 40 * time.Second}}, at: 60 * time.Second},
			{notes: []note{{"a", store.Trusted, 60 * time.Second}}, at: 89 * time.Second},
			{at: 91 * time.Second, want: []string{"a"}},
		}},
		{"only the silent one of two", []step{
			{notes: []note{{"a", store.Trusted, 0}, {"b", store.Trusted, 0}}, at: 25 * time.Second},
			{notes: []note{{"b", store.Trusted, 25 * time.Second}}, at: 31 * time.Second, want: []string{"a"}},
			{at: 56 * time.Second, want: []string{"b"}},
		}},
		{"not TRUSTED: never proposed", []step{
			{notes: []note{{"u", store.Untrusted, 0}, {"e", store.Enrolling, 0}, {"s", store.Stale, 0}, {"d", store.Decommissioned, 0}}, at: 10 * after},
		}},
		{"turned UNTRUSTED while queued", []step{
			{notes: []note{{"a", store.Trusted, 0}, {"a", store.Untrusted, 5 * time.Second}}, at: 10 * after},
		}},
		{"marked STALE, verifies again, goes silent again", []step{
			{notes: []note{{"a", store.Trusted, 0}}, at: 31 * time.Second, want: []string{"a"}},
			{notes: []note{{"a", store.Stale, 0}}, at: 40 * time.Second},
			{notes: []note{{"a", store.Trusted, 50 * time.Second}}, at: 79 * time.Second},
			{at: 81 * time.Second, want: []string{"a"}},
		}},
		{"proposed but not marked (re-checked in its worker): silent until noted", []step{
			{notes: []note{{"a", store.Trusted, 0}}, at: 31 * time.Second, want: []string{"a"}},
			{at: 100 * time.Second},
			{notes: []note{{"a", store.Trusted, 0}}, at: 101 * time.Second, want: []string{"a"}},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := newStaleIndex(after)
			for i, st := range tc.steps {
				for _, n := range st.notes {
					x.note(n.key, "id-"+n.key, n.state, t0.Add(n.last))
				}
				var got []string
				for _, e := range x.expired(t0.Add(st.at)) {
					if e.id != "id-"+e.key {
						t.Fatalf("step %d: entry %+v", i, e)
					}
					got = append(got, e.key)
				}
				sort.Strings(got)
				if !reflect.DeepEqual(got, st.want) {
					t.Fatalf("step %d: expired at t0+%s = %v, want %v", i, st.at, got, st.want)
				}
			}
		})
	}
	// Each device is queued once however often it verifies.
	x := newStaleIndex(after)
	for i := 0; i < 1000; i++ {
		x.note("a", "a", store.Trusted, t0.Add(time.Duration(i)*time.Millisecond))
	}
	if n := x.queued(); n != 1 {
		t.Fatalf("1000 verifications queued %d entries", n)
	}
}

// TestStaleness end to end: a device that keeps verifying stays TRUSTED
// for longer than the staleness period; once it is silent it becomes STALE;
// its next good record makes it TRUSTED, and silence makes it STALE again.
// A device stored TRUSTED before the hub started (on the same store) is
// found by the index loaded at start.
func TestStaleness(t *testing.T) {
	const after = 3 * time.Second
	dir := t.TempDir()
	st, err := store.OpenBolt(filepath.Join(dir, "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	old := &store.Device{Key: "default/old", ID: "old", Fleet: "default", Group: "g", State: store.Trusted, LastVerified: time.Now().UTC().Add(-time.Hour)}
	if err := st.Save(old, nil, 0, nil); err != nil {
		t.Fatal(err)
	}
	s, err := Start(context.Background(), Config{Store: st, Verifier: verifier.Config{AllowTOFUUnsafe: true}, EmbeddedAddr: "127.0.0.1:0",
		AllowUnsignedPoliciesUnsafe: true, StaleAfter: after, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	waitState(t, st, "default/old", store.Stale, 20*time.Second)

	d := newWireDevice(t, s, "dev")
	d.measure("/usr/bin/ok", "ok")
	if _, err := s.SetPolicy("g", policyFor(t, d), nil, "test", ""); err != nil {
		t.Fatal(err)
	}
	d.enroll("g")
	verifyFor := func(span time.Duration) {
		t.Helper()
		for start := time.Now(); time.Since(start) < span; {
			m, raw := d.record(nil)
			a := d.send(raw)
			if a.Rejected || a.State != store.Trusted {
				t.Fatalf("record %d: rejected %v, state %s (%s)", m.Seq, a.Rejected, a.State, a.Reason)
			}
			d.accepted(m, a)
			if got := state(t, s, "dev"); got.State != store.Trusted {
				t.Fatalf("a verifying device is %s after %s: %s", got.State, time.Since(start).Round(time.Millisecond), got.Reason)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	verifyFor(2 * after)
	waitState(t, st, "default/dev", store.Stale, 20*time.Second)
	verifyFor(after / 2)
	waitState(t, st, "default/dev", store.Stale, 20*time.Second)
	if !hasStateEvent(t, st, "default/dev", "TRUSTED → STALE", 2) {
		t.Fatal("the history does not show the device going STALE twice")
	}
}

func hasStateEvent(t *testing.T, st store.Store, key, prefix string, n int) bool {
	t.Helper()
	evs, err := st.Events(key, 1000)
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for _, e := range evs {
		if e.Kind == "state" && len(e.Detail) >= len(prefix) && e.Detail[:len(prefix)] == prefix {
			got++
		}
	}
	return got == n
}

// BenchmarkStaleIndex: the per-record cost (note of a queued device) and
// the per-second check with 100,000 TRUSTED devices of which none is due
// (what replaced a scan of every device record each second).
func BenchmarkStaleIndex(b *testing.B) {
	const n = 100_000
	t0 := time.Now()
	x := newStaleIndex(30 * time.Second)
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "default/dev-" + strconv.Itoa(i)
		x.note(keys[i], keys[i][8:], store.Trusted, t0)
	}
	b.Run("note", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			x.note(keys[i%n], keys[i%n][8:], store.Trusted, t0.Add(time.Duration(i)))
		}
	})
	b.Run("check-none-due", func(b *testing.B) {
		for b.Loop() {
			if len(x.expired(t0.Add(time.Second))) != 0 {
				b.Fatal("expired")
			}
		}
	})
}
