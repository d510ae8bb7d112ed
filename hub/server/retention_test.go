package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ratatouille/rat/audit"
	"github.com/ratatouille/rat/evidence/protocol"
	"github.com/ratatouille/rat/hub/export"
	"github.com/ratatouille/rat/hub/store"
	"github.com/ratatouille/rat/hub/verifier"
)

// bareStore is a store whose evidence records all read as stored before
// the store stamped them (EvidenceStored gives no time): retention then
// goes by the records' device time.
type bareStore struct{ *store.Bolt }

func (b bareStore) EvidenceStored(key string, from, to uint64, fn func(uint64, time.Time, []byte) error) error {
	return b.Bolt.EvidenceStored(key, from, to, func(seq uint64, _ time.Time, raw []byte) error { return fn(seq, time.Time{}, raw) })
}

// TestPruneEvidence runs retention passes over devices whose stored records
// have known ages, by the store's stamp and, for records stored before
// stamps, by their device time: only a prefix older than the retention
// goes, ending at a quote (the chunks before the next quote stay with it),
// never a record of the current boot; a device clock set back does not
// age a stamped record; a bare record without device time ends the pass;
// deletes larger than one commit finish; with no retention nothing goes.
func TestPruneEvidence(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	const retention = 24 * time.Hour
	type rec struct {
		age    time.Duration // before now, when stored
		quoted bool
		clock  time.Duration // the device's clock, before now (0: as age; -1: none)
	}
	old, fresh := rec{age: 48 * time.Hour, quoted: true}, rec{age: time.Hour, quoted: true}
	oldChunk := rec{age: 48 * time.Hour}
	lying := rec{age: time.Hour, quoted: true, clock: 48 * time.Hour} // says two days, stored an hour ago
	undated := rec{age: 48 * time.Hour, quoted: true, clock: -1}
	many := make([]rec, 5000)
	for i := range many {
		many[i] = old
	}
	both, stamped, bare := []string{"stamped", "bare"}, []string{"stamped"}, []string{"bare"}
	cases := []struct {
		name      string
		modes     []string
		recs      []rec // seq 1, 2, …
		bootStart uint64
		retention time.Duration
		want      []uint64 // seqs left
	}{
		{"old boot goes, the current boot stays however old", both, []rec{old, old, oldChunk, old, old, old}, 5, retention, []uint64{5, 6}},
		{"a chunk before the current boot's first quote stays", both, []rec{old, oldChunk, old}, 3, retention, []uint64{2, 3}},
		{"a chunk inside an old boot goes with its quote", both, []rec{oldChunk, old, oldChunk, old, fresh}, 5, retention, []uint64{5}},
		{"records inside the retention stay", both, []rec{old, fresh, old, fresh}, 4, retention, []uint64{2, 3, 4}},
		{"a device clock set back does not age a record", stamped, []rec{old, lying, old, old}, 4, retention, []uint64{2, 3, 4}},
		{"a device clock set back ages a bare record", bare, []rec{old, lying, old, old}, 4, retention, []uint64{4}},
		{"a stamped record needs no device time", stamped, []rec{old, undated, old, old}, 4, retention, []uint64{4}},
		{"a bare record without device time ends the pass", bare, []rec{old, undated, old, old}, 4, retention, []uint64{2, 3, 4}},
		{"one boot: nothing goes", both, []rec{old, old, old}, 1, retention, []uint64{1, 2, 3}},
		{"more than one commit", stamped, append(slices.Clone(many), old), 5001, retention, []uint64{5001}},
		{"no retention: nothing goes", both, []rec{old, old, old}, 3, 0, []uint64{1, 2, 3}},
	}
	for i, tc := range cases {
		for _, mode := range tc.modes {
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				var at time.Time
				bolt, err := store.OpenBolt(filepath.Join(t.TempDir(), "hub.db"), store.WithClock(func() time.Time { return at }))
				if err != nil {
					t.Fatal(err)
				}
				defer bolt.Close()
				var st store.Store = bolt
				if mode == "bare" {
					st = bareStore{bolt}
				}
				key := fmt.Sprintf("default/dev%d", i)
				d := &store.Device{Key: key, ID: fmt.Sprintf("dev%d", i), Fleet: "default", Group: "g", State: store.Trusted, BootStartSeq: tc.bootStart}
				for j, r := range tc.recs {
					e := protocol.Evidence{Seq: uint64(j + 1), IMAStart: uint64(j)}
					switch r.clock {
					case 0:
						e.Time = now.Add(-r.age).Unix()
					case -1:
					default:
						e.Time = now.Add(-r.clock).Unix()
					}
					if r.quoted {
						e.Attest, e.Signature = []byte{1}, []byte{2}
					}
					raw, err := protocol.Marshal(&e)
					if err != nil {
						t.Fatal(err)
					}
					d.NextSeq = e.Seq + 1
					at = now.Add(-r.age)
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
				if got := s.Metrics.Pruned.Load(); got != uint64(res.Records) {
					t.Fatalf("pruned counter %d, want %d", got, res.Records)
				}
				// A second pass finds nothing more.
				if res, err := s.PruneEvidence(now); err != nil || res.Records != 0 {
					t.Fatalf("second pass: %+v, %v", res, err)
				}
			})
		}
	}
}

// TestRetentionExportAudits: a device's first boot ages out and is pruned;
// what is left, its current boot from IMA entry 0, exports and is TRUSTED
// for rat-audit's verifier with the hub's key pinned and only what this
// setup cannot give waived (the simulator has no EK certificate or
// firmware log; the policy is unsigned here).
func TestRetentionExportAudits(t *testing.T) {
	dir := t.TempDir()
	st, err := store.OpenBolt(filepath.Join(dir, "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	hubKey, err := export.LoadOrCreateKey(filepath.Join(dir, "hub-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Start(context.Background(), Config{Store: st, Key: hubKey, Verifier: verifier.Config{AllowTOFUUnsafe: true}, EmbeddedAddr: "127.0.0.1:0",
		AllowUnsignedPoliciesUnsafe: true, StaleAfter: time.Hour, EvidenceRetention: 24 * time.Hour, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	d := newWireDevice(t, s, "dev")
	d.measure("/usr/bin/ok", "ok")
	if _, err := s.SetPolicy("g", policyFor(t, d), nil, "test", ""); err != nil {
		t.Fatal(err)
	}
	d.enroll("g")
	send := func(boot string, fromZero bool) uint64 {
		t.Helper()
		raw := relRecord(d, boot, "", fromZero)
		ack := d.send(raw)
		if ack.Rejected || ack.State != store.Trusted {
			t.Fatalf("%s record %d: %+v", boot, d.seq, ack)
		}
		seq := d.seq
		d.acceptRaw(raw, ack)
		return seq
	}
	for i := 0; i < 3; i++ {
		send("boot-1", false)
	}
	var boot2 []uint64
	boot2 = append(boot2, send("boot-2", true))
	for i := 0; i < 2; i++ {
		d.measure("/usr/bin/ok", "ok")
		boot2 = append(boot2, send("boot-2", false))
	}
	// Two days on, with a day's retention: every record is older than
	// that, and only the first boot may go.
	res, err := s.PruneEvidence(time.Now().Add(48 * time.Hour))
	if err != nil || res.Records != 3 {
		t.Fatalf("pruned %+v, %v; want the 3 records of boot-1", res, err)
	}
	var left []uint64
	if err := st.Evidence("default/dev", 0, ^uint64(0), func(seq uint64, _ []byte) error { left = append(left, seq); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(left, boot2) {
		t.Fatalf("left %v, want boot-2's %v", left, boot2)
	}
	var buf bytes.Buffer
	if err := export.Write(&buf, st, "default/dev", export.Options{Hub: "test", Key: hubKey}); err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(bytes.NewReader(buf.Bytes()), audit.WithHubKey(hubKey.Public()),
		audit.Waive(audit.CheckEKCert, "the TPM simulator has no EK certificate"),
		audit.Waive(audit.CheckEventLog, "the TPM simulator has no firmware"),
		audit.Waive(audit.CheckPolicySignature, "this hub takes unsigned policies"))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Verdict != audit.Trusted || rep.Quotes != len(boot2) {
		var out bytes.Buffer
		rep.WriteText(&out)
		t.Fatalf("verdict %s over %d quotes, want TRUSTED over %d\n%s", rep.Verdict, rep.Quotes, len(boot2), out.String())
	}
}

// BenchmarkPruneEvidence is one retention pass over 1,000 devices that
// each have 100 records past the retention (a previous boot) and 10 of
// the current boot: the CPU and time a pass costs per record it deletes.
func BenchmarkPruneEvidence(b *testing.B) {
	const devices, expired, current = 1000, 100, 10
	now := time.Now().UTC()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		at := now.Add(-48 * time.Hour)
		st, err := store.OpenBolt(filepath.Join(b.TempDir(), "hub.db"), store.WithClock(func() time.Time { return at }))
		if err != nil {
			b.Fatal(err)
		}
		raw, err := protocol.Marshal(&protocol.Evidence{Seq: 1, Time: now.Unix(), Attest: make([]byte, 145), Signature: make([]byte, 72),
			Claims: make([]byte, 120), PCRs: map[uint16]map[int][]byte{0x0b: {10: make([]byte, 32)}}})
		if err != nil {
			b.Fatal(err)
		}
		var wg sync.WaitGroup
		for d := 0; d < devices; d++ {
			wg.Add(1)
			go func(d int) {
				defer wg.Done()
				dev := &store.Device{Key: fmt.Sprintf("default/dev%04d", d), ID: fmt.Sprintf("dev%04d", d), Fleet: "default", State: store.Trusted, BootStartSeq: expired + 1}
				for seq := uint64(1); seq <= expired+current; seq++ {
					if err := st.Save(dev, nil, seq, raw); err != nil {
						b.Error(err)
						return
					}
				}
			}(d)
		}
		wg.Wait()
		s, err := Start(context.Background(), Config{Store: st, Verifier: verifier.Config{AllowTOFUUnsafe: true}, EmbeddedAddr: "127.0.0.1:0",
			EvidenceRetention: 24 * time.Hour, DeviceCache: -1, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		res, err := s.PruneEvidence(now)
		b.StopTimer()
		if err != nil || res.Records != devices*expired {
			b.Fatalf("pruned %+v, %v", res, err)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64((i+1)*devices*expired), "ns/deleted-record")
		s.Close()
		st.Close()
	}
}
