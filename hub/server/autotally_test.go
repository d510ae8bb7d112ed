package server

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"

	"github.com/fxamacker/cbor/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/ratatouille/rat/hub/store"
	"github.com/ratatouille/rat/ota/rollout"
)

// recordsOnly hides store.Bolt's Briefs, so the hub lists devices by
// decoding every whole record (Server.briefs' fallback), as the rollout
// tally was built before briefs held group and release.
type recordsOnly struct{ store.Store }

// mixedFleet saves n devices of the groups, releases and states the
// tally tells apart into st.
func mixedFleet(tb testing.TB, st store.Store, n int) {
	tb.Helper()
	groups := []string{"edge", "lab", "edge", "retail", "edge", "lab", ""}
	releases := []string{"1.0", "1.1", "", "1.1", "1.0"}
	states := []string{store.Trusted, store.Untrusted, store.Stale, store.Enrolling, store.Decommissioned, store.Trusted}
	for i := range n {
		id := fmt.Sprintf("d%06d", i)
		d := &store.Device{Key: "default/" + id, ID: id, Fleet: "default", Group: groups[i%len(groups)],
			Release: releases[i%len(releases)], State: states[i%len(states)], AKPublic: make([]byte, 88), Nonces: make([]store.Nonce, 8)}
		if err := st.Save(d, nil, 0, nil); err != nil {
			tb.Fatal(err)
		}
	}
}

// TestTallyFromBriefs checks that the rollout tally built from the
// devices' briefs is the one built from their whole records, for a fleet
// of every group, release and state mixed, with and without
// ReleaseWaitStale, and that a brief in the form older hubs wrote (no
// group, no release) is completed from the device's record rather than
// counted as a device of no group.
func TestTallyFromBriefs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	st, err := store.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	mixedFleet(t, st, 120)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	// An older hub wrote two devices' briefs into the upgraded store.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, k := range []string{"default/d000000", "default/d000007"} {
			v, err := cbor.Marshal(map[int]string{1: k[len("default/"):], 2: store.Trusted})
			if err != nil {
				return err
			}
			if err := tx.Bucket([]byte("briefs")).Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	if cerr := db.Close(); err != nil || cerr != nil {
		t.Fatal(err, cerr)
	}
	if st, err = store.OpenBolt(path); err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if bs, err := st.Briefs(); err != nil || !bs[0].Partial || bs[0].Group != "" {
		t.Fatalf("the old brief is not Partial: %+v %v", bs[0], err)
	}
	tests := []struct {
		waitStale bool
		// what the tally must say of edge's 1.0 (counted by hand from
		// mixedFleet's cycles)
		edge10 rollout.Tally
	}{
		{false, rollout.Tally{Reporting: 9, Holding: 17, NotCounted: 26}},
		{true, rollout.Tally{Reporting: 12, Holding: 23, NotCounted: 17}},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("waitStale=%v", tc.waitStale), func(t *testing.T) {
			tally := func(st store.Store) *rolloutTally {
				s := &Server{st: st, cfg: Config{ReleaseWaitStale: tc.waitStale}}
				bs, err := s.briefs()
				if err != nil {
					t.Fatal(err)
				}
				if err := s.buildTally(bs); err != nil {
					t.Fatal(err)
				}
				return &s.rel.track
			}
			briefs, records := tally(st), tally(recordsOnly{st})
			if len(briefs.devs) != 120 || !reflect.DeepEqual(briefs.devs, records.devs) {
				t.Errorf("standings from briefs differ from those of the records")
			}
			if !reflect.DeepEqual(briefs.groups, records.groups) {
				t.Errorf("group tallies from briefs %+v, from records %+v", briefs.groups, records.groups)
			}
			for _, g := range []struct{ group, version string }{{"edge", "1.0"}, {"edge", "1.1"}, {"lab", "1.1"}, {"retail", "1.0"}, {"", ""}} {
				if a, b := briefs.of(g.group, g.version), records.of(g.group, g.version); a != b {
					t.Errorf("%s/%s: from briefs %+v, from records %+v", g.group, g.version, a, b)
				}
			}
			if got := briefs.of("edge", "1.0"); got != tc.edge10 {
				t.Errorf("edge/1.0: %+v, want %+v", got, tc.edge10)
			}
		})
	}
}

// BenchmarkBuildTally builds the rollout tally of a fleet of
// RAT_STORE_DEVICES devices (default 100,000) from their briefs, as Start
// does, and from their whole records, as the hub did before briefs held
// group and release (at the first write of a group with a release
// rolling out, every device write waiting). The fleet is hub/store's
// BenchmarkRestart store (records as the hub saves them after three
// attestations, ≈ 5 KB each), which that benchmark makes once under
// $TMPDIR/rat-storebench; it is copied, so nothing here changes it.
func BenchmarkBuildTally(b *testing.B) {
	n := 100_000
	if v := os.Getenv("RAT_STORE_DEVICES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatalf("RAT_STORE_DEVICES=%q", v)
		}
	}
	cached := filepath.Join(os.TempDir(), "rat-storebench", fmt.Sprintf("fleet-v2-d%d-r3.db", n))
	if _, err := os.Stat(cached); err != nil {
		b.Skipf("no fleet store %s: make it with go test -run '^$' -bench '^BenchmarkRestart$' ./hub/store", cached)
	}
	path := filepath.Join(b.TempDir(), "hub.db")
	if err := copyStore(cached, path); err != nil {
		b.Fatal(err)
	}
	st, err := store.OpenBolt(path) // rebuilds briefs of an older format, once
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	for _, from := range []struct {
		name string
		st   store.Store
	}{{"briefs", st}, {"records", recordsOnly{st}}} {
		b.Run(from.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				s := &Server{st: from.st}
				bs, err := s.briefs()
				if err != nil {
					b.Fatal(err)
				}
				if err := s.buildTally(bs); err != nil || len(s.rel.track.devs) != n {
					b.Fatalf("%d devices tallied, %v", len(s.rel.track.devs), err)
				}
			}
		})
	}
}

func copyStore(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
