package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ratatouille/rat/evidence/protocol"
	"github.com/ratatouille/rat/hub/store"
	"github.com/ratatouille/rat/hub/verifier"
)

// TestPruneEvidence runs retention passes over devices whose stored records
// have known device times: only a prefix older than the retention goes,
// ending at a quote (the chunks before the next quote stay with it), never
// a record of the current boot, and nothing past a record with no device
// time; deletes larger than one commit finish; with no retention nothing
// goes.
func TestPruneEvidence(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	const retention = 24 * time.Hour
	type rec struct {
		age    time.Duration // before now; 0: no device time
		quoted bool
	}
	old, fresh := rec{48 * time.Hour, true}, rec{time.Hour, true}
	oldChunk := rec{48 * time.Hour, false}
	many := make([]rec, 5000)
	for i := range many {
		many[i] = old
	}
	cases := []struct {
		name      string
		recs      []rec // seq 1, 2, …
		bootStart uint64
		retention time.Duration
		want      []uint64 // seqs left
	}{
		{"old boot goes, the current boot stays however old", []rec{old, old, oldChunk, old, old, old}, 5, retention, []uint64{5, 6}},
		{"a chunk before the current boot's first quote stays", []rec{old, oldChunk, old}, 3, retention, []uint64{2, 3}},
		{"a chunk inside an old boot goes with its quote", []rec{oldChunk, old, oldChunk, old, fresh}, 5, retention, []uint64{5}},
		{"records inside the retention stay", []rec{old, fresh, old, fresh}, 4, retention, []uint64{2, 3, 4}},
		{"a record without device time ends the pass", []rec{old, {0, true}, old, old}, 4, retention, []uint64{2, 3, 4}},
		{"one boot: nothing goes", []rec{old, old, old}, 1, retention, []uint64{1, 2, 3}},
		{"more than one commit", append(slices.Clone(many), old), 5001, retention, []uint64{5001}},
		{"no retention: nothing goes", []rec{old, old, old}, 3, 0, []uint64{1, 2, 3}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, err := store.OpenBolt(filepath.Join(t.TempDir(), "hub.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			key := fmt.Sprintf("default/dev%d", i)
			d := &store.Device{Key: key, ID: fmt.Sprintf("dev%d", i), Fleet: "default", Group: "g", State: store.Trusted, BootStartSeq: tc.bootStart}
			for j, r := range tc.recs {
				e := protocol.Evidence{Seq: uint64(j + 1), IMAStart: uint64(j)}
				if r.age != 0 {
					e.Time = now.Add(-r.age).Unix()
				}
				if r.quoted {
					e.Attest, e.Signature = []byte{1}, []byte{2}
				}
				raw, err := protocol.Marshal(&e)
				if err != nil {
					t.Fatal(err)
				}
				d.NextSeq = e.Seq + 1
				if err := st.Save(d, nil, e.Seq, raw); err != nil {
					t.Fatal(err)
				}
			}
			// A second device with nothing stored is passed over.
			if err := st.Save(&store.Device{Key: "default/empty", ID: "empty", Fleet: "default", State: store.Trusted, BootStartSeq: 9}, nil, 0, nil); err != nil {
				t.Fatal(err)
			}
			s, err := Start(context.Background(), Config{Store: st, Verifier: verifier.Config{AllowTOFUUnsafe: true}, EmbeddedAddr: "127.0.0.1:0",
				EvidenceRetention: tc.retention, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			res, err := s.PruneEvidence(now)
			if err != nil {
				t.Fatal(err)
			}
			var left []uint64
			if err := st.Evidence(key, 0, ^uint64(0), func(seq uint64, _ []byte) error { left = append(left, seq); return nil }); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(left, tc.want) {
				if len(left) > 10 {
					left = append(left[:5], left[len(left)-5:]...)
				}
				t.Fatalf("left %v, want %v", left, tc.want)
			}
			if gone := len(tc.recs) - len(tc.want); res.Records != gone || (gone > 0) != (res.Devices == 1) {
				t.Fatalf("pass removed %d records of %d devices, want %d", res.Records, res.Devices, gone)
			}
			// A second pass finds nothing more.
			if res, err := s.PruneEvidence(now); err != nil || res.Records != 0 {
				t.Fatalf("second pass: %+v, %v", res, err)
			}
		})
	}
}
