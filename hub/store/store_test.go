package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ratatouille/rat/evidence/failure"
	"github.com/ratatouille/rat/evidence/quote"
)

func fullDevice(key string) *Device {
	on := true
	t := time.Date(2026, 12, 3, 10, 11, 12, 123456789, time.UTC)
	return &Device{Key: key, ID: "d1", Fleet: "default", Group: "g", State: Untrusted, Reason: "why",
		EKPublic: []byte{1, 2, 3}, EKCerts: [][]byte{{4}, {5, 6}}, EKVerified: true, EKIssuer: "CN=x", TOFU: true, AKPublic: []byte{7}, Baseline: true,
		EnrolledAt: t, LastSeen: t.Add(time.Second), LastVerified: t.Add(2 * time.Second),
		NextSeq: 9, QuotePrev: bytes.Repeat([]byte{8}, 32), Clock: quote.ClockInfo{Clock: 5, ResetCount: 1, RestartCount: 2, Safe: true}, HaveClock: true,
		Nonces: []Nonce{{Idx: 3, Value: bytes.Repeat([]byte{9}, 32), At: t}}, NonceUsed: 3, NonceNext: 4, Thinned: 2,
		BootID: "b", BootStartSeq: 4, IMACount: 100, PCR10: bytes.Repeat([]byte{1}, 32), PendingStart: 7, PendingIMA: []byte{1, 2},
		Release: "r1", EventLogVerified: true, SecureBoot: &on, PolicyDigest: "p",
		Failures: []failure.Event{{ID: "ima.x", Severity: failure.Critical, Context: "c", Fields: map[string]string{"path": "/x"}}}, Quotes: 11}
}

// TestDeviceRecordEncoding checks that a device record reads back exactly
// as written (compared through its JSON form, field by field), that
// records written as JSON by older hubs are still read, and that the
// staleness brief reads both.
func TestDeviceRecordEncoding(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	st, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	want := fullDevice("default/d1")
	if err := st.Save(want, nil, 0, nil); err != nil {
		t.Fatal(err)
	}
	// A record written as JSON by an older hub, which kept no briefs: the
	// store is reopened without its briefs bucket, which the open rebuilds.
	// And a CBOR record written whole, identity included, by a hub before
	// identities were kept apart.
	legacy := fullDevice("default/old")
	lj, _ := json.Marshal(legacy)
	whole := fullDevice("default/whole")
	wv, err := encodeDevice(whole)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bBriefs); err != nil {
			return err
		}
		if err := tx.Bucket(bDevices).Put([]byte(whole.Key), wv); err != nil {
			return err
		}
		return tx.Bucket(bDevices).Put([]byte(legacy.Key), lj)
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if st, err = OpenBolt(path); err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	all, err := st.Devices()
	if err != nil || len(all) != 3 {
		t.Fatalf("Devices: %d, %v", len(all), err)
	}
	same := func(what string, want, got *Device) {
		t.Helper()
		a, _ := json.Marshal(want)
		b, _ := json.Marshal(got)
		if !bytes.Equal(a, b) {
			t.Errorf("%s %s differs:\n%s\n%s", want.Key, what, a, b)
		}
	}
	byKey := map[string]*Device{want.Key: want, legacy.Key: legacy, whole.Key: whole}
	for _, d := range byKey {
		got, err := st.Device(d.Key)
		if err != nil {
			t.Fatal(err)
		}
		same("read back", d, got)
	}
	for i := range all {
		d := byKey[all[i].Key]
		if d == nil {
			t.Fatalf("Devices lists %s, which was never stored", all[i].Key)
		}
		same("listed by Devices", d, &all[i])
	}
	// Saved now, identities go apart: the record holds none of it, and
	// both read back whole.
	for _, d := range []*Device{legacy, whole} {
		if err := st.Save(d, nil, 0, nil); err != nil {
			t.Fatal(err)
		}
		got, err := st.Device(d.Key)
		if err != nil {
			t.Fatal(err)
		}
		same("after its save", d, got)
	}
	if err := st.db.View(func(tx *bolt.Tx) error {
		var rec storedDevice
		if err := decodeDevice(tx.Bucket(bDevices).Get([]byte(whole.Key)), &rec); err != nil {
			return err
		}
		if d := rec.Device; !rec.IdentityApart || d.EKPublic != nil || d.EKCerts != nil || d.AKPublic != nil || d.Binding != nil || d.EKIssuer != "" || !d.EnrolledAt.IsZero() {
			t.Errorf("identity not apart: %+v", rec)
		}
		if tx.Bucket(bIdentity).Get([]byte(whole.Key)) == nil {
			t.Error("no identity record")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// A new identity (re-enrollment with another AK) replaces the old one.
	whole.AKPublic, whole.EKVerified = []byte{9, 9, 9}, false
	if err := st.Save(whole, nil, 0, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := st.Device(whole.Key); err != nil || !bytes.Equal(got.AKPublic, whole.AKPublic) || got.EKVerified {
		t.Fatalf("new identity: %+v, %v", got, err)
	}
	briefs, err := st.Briefs()
	if err != nil || len(briefs) != 3 {
		t.Fatalf("briefs: %v %d", err, len(briefs))
	}
	for _, b := range briefs {
		if b.State != Untrusted || !b.LastVerified.Equal(want.LastVerified.Truncate(briefGranularity)) || b.ID != "d1" || b.Group != "g" || b.Release != "r1" || b.Partial {
			t.Errorf("brief %+v", b)
		}
	}
	// Not a device record: refused, not misread.
	if err := decodeDevice([]byte{0xa0}, new(Device)); err == nil {
		t.Error("untagged CBOR accepted")
	}
}

// TestBriefsFollowSaves checks that the briefs the hub loads at start are
// those of the newest saved record of each device, including state changes
// and a device never verified, with the time to the minute below.
func TestBriefsFollowSaves(t *testing.T) {
	st, err := OpenBolt(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 5, time.UTC)
	steps := []struct {
		key, state     string
		verified       time.Time
		group, release string
	}{
		{"default/a", Enrolling, time.Time{}, "g", ""},
		{"default/b", Enrolling, time.Time{}, "g", ""},
		{"default/a", Trusted, t0, "g", "r1"},
		{"default/a", Trusted, t0.Add(10 * time.Second), "h", "r2"},
		{"default/b", Untrusted, t0.Add(time.Second), "g", "r1"},
		{"default/a", Stale, t0.Add(10 * time.Second), "h", "r2"},
	}
	for _, s := range steps {
		d := fullDevice(s.key)
		d.ID, d.State, d.LastVerified, d.Group, d.Release = s.key[len("default/"):], s.state, s.verified, s.group, s.release
		if err := st.Save(d, nil, 0, nil); err != nil {
			t.Fatal(err)
		}
	}
	got, err := st.Briefs()
	if err != nil {
		t.Fatal(err)
	}
	// Times to the minute below (briefGranularity): t0 is 10:00:00.000000005.
	want := []DeviceBrief{
		{Key: "default/a", ID: "a", State: Stale, LastVerified: t0.Truncate(time.Minute), Group: "h", Release: "r2"},
		{Key: "default/b", ID: "b", State: Untrusted, LastVerified: t0.Truncate(time.Minute), Group: "g", Release: "r1"},
	}
	if len(got) != len(want) {
		t.Fatalf("briefs %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].Key != want[i].Key || got[i].ID != want[i].ID || got[i].State != want[i].State || !got[i].LastVerified.Equal(want[i].LastVerified) ||
			got[i].Group != want[i].Group || got[i].Release != want[i].Release || got[i].Partial {
			t.Errorf("brief %+v, want %+v", got[i], want[i])
		}
	}
}

// oldBrief is a brief as hubs before briefsFormat 2 wrote it: no format,
// group or release.
type oldBrief struct {
	ID           string `cbor:"1,keyasint"`
	State        string `cbor:"2,keyasint"`
	LastVerified int64  `cbor:"3,keyasint,omitempty"`
}

// TestBriefsOldFormat checks that briefs written before they held group
// and release are never read as "no group, no release": a store whose
// briefs bucket predates format 2 gets it rebuilt at open, and a brief in
// the old form written into an upgraded store (by an older hub) comes
// back Partial.
func TestBriefsOldFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	st, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	a, b := fullDevice("default/a"), fullDevice("default/b")
	a.Group, a.Release = "edge", "1.2"
	b.Group, b.Release, b.State = "lab", "", Trusted
	for _, d := range []*Device{a, b} {
		if err := st.Save(d, nil, 0, nil); err != nil {
			t.Fatal(err)
		}
	}
	// putOld writes the old form of every device's brief; withMarker
	// keeps the store's mark of format 2 (an older hub wrote into an
	// upgraded store), else it is removed (a store as older hubs left it).
	putOld := func(withMarker bool) {
		t.Helper()
		err := st.db.Update(func(tx *bolt.Tx) error {
			for _, d := range []*Device{a, b} {
				v, err := devEnc.Marshal(&oldBrief{ID: d.ID, State: d.State, LastVerified: d.LastVerified.UnixNano()})
				if err != nil {
					return err
				}
				if err := tx.Bucket(bBriefs).Put([]byte(d.Key), v); err != nil {
					return err
				}
			}
			if withMarker {
				return nil
			}
			return tx.DeleteBucket(bMeta)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	reopen := func() {
		t.Helper()
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		if st, err = OpenBolt(path); err != nil {
			t.Fatal(err)
		}
	}
	check := func(name string, partial bool) {
		t.Helper()
		got, err := st.Briefs()
		if err != nil || len(got) != 2 {
			t.Fatalf("%s: briefs %+v, %v", name, got, err)
		}
		for i, d := range []*Device{a, b} {
			g := got[i]
			// An old hub's brief has the exact time; this one's, the minute.
			lv := d.LastVerified.Truncate(briefGranularity)
			if partial {
				lv = d.LastVerified
			}
			if g.Key != d.Key || g.ID != d.ID || g.State != d.State || !g.LastVerified.Equal(lv) || g.Partial != partial {
				t.Errorf("%s: brief %+v of %s", name, g, d.Key)
			}
			if !partial && (g.Group != d.Group || g.Release != d.Release) {
				t.Errorf("%s: brief %+v, want group %q release %q", name, g, d.Group, d.Release)
			}
		}
	}
	tests := []struct {
		name       string
		withMarker bool
		partial    bool
	}{
		{"store with old briefs, rebuilt at open", false, false},
		{"old briefs written into an upgraded store", true, true},
	}
	for _, tc := range tests {
		putOld(tc.withMarker)
		reopen()
		check(tc.name, tc.partial)
	}
	// The next save of each device writes its brief in the current form.
	for _, d := range []*Device{a, b} {
		if err := st.Save(d, nil, 0, nil); err != nil {
			t.Fatal(err)
		}
	}
	check("saved again", false)
	st.Close()
}

// TestActiveDigest follows the group's active policy through activations,
// a rejected version (which changes nothing) and a reopen of the file: the
// digest the hub checks every quote against is always the newest active
// one, cached or not.
func TestActiveDigest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	st, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.ActiveDigest("g"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("no policy yet: %v", err)
	}
	now := time.Now().UTC()
	steps := []struct {
		p    Policy
		want string
	}{
		{Policy{Group: "g", Digest: "sha256:aa", Status: "active", Activated: now}, "sha256:aa"},
		{Policy{Group: "g", Digest: "sha256:bb", Status: "active", Activated: now}, "sha256:bb"},
		{Policy{Group: "g", Digest: "sha256:cc", Status: "rejected", Activated: now}, "sha256:bb"},
		{Policy{Group: "h", Digest: "sha256:dd", Status: "active", Activated: now}, "sha256:bb"},
		{Policy{Group: "g", Digest: "sha256:aa", Status: "active", Activated: now}, "sha256:aa"},
	}
	for i, s := range steps {
		if err := st.PutPolicy(&s.p); err != nil {
			t.Fatal(err)
		}
		for _, read := range []string{"first", "cached"} {
			if got, err := st.ActiveDigest("g"); err != nil || got != s.want {
				t.Fatalf("step %d, %s read: %q, %v; want %q", i, read, got, err, s.want)
			}
		}
		if p, err := st.ActivePolicy("g"); err != nil || p.Digest != s.want {
			t.Fatalf("step %d: ActivePolicy %+v, %v", i, p, err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err = OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for g, want := range map[string]string{"g": "sha256:aa", "h": "sha256:dd"} {
		if got, err := st.ActiveDigest(g); err != nil || got != want {
			t.Fatalf("reopened, group %s: %q, %v; want %q", g, got, err, want)
		}
	}
}

// TestDeleteEvidence cuts three devices' evidence in one call, across
// several commits (more than maxDeletes records in all, one device alone
// more than a commit): exactly the records below each cut go, a device
// without evidence and a cut below everything are passed over.
func TestDeleteEvidence(t *testing.T) {
	st, err := OpenBolt(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	counts := map[string]int{"default/a": maxDeletes + 500, "default/b": 10, "default/c": maxDeletes}
	for key, n := range counts {
		d := &Device{Key: key, ID: key[len("default/"):], Fleet: "default", State: Trusted}
		if err := st.write(func(tx *bolt.Tx) error {
			xb, err := tx.Bucket(bEvidence).CreateBucketIfNotExists([]byte(key))
			if err != nil {
				return err
			}
			for seq := 1; seq <= n; seq++ {
				if err := xb.Put(u64(uint64(seq)), []byte{byte(seq)}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := st.Save(d, nil, 0, nil); err != nil {
			t.Fatal(err)
		}
	}
	cuts := []EvidenceCut{{"default/a", maxDeletes + 101}, {"default/none", 50}, {"default/b", 1}, {"default/c", maxDeletes}}
	n, err := st.DeleteEvidence(cuts)
	if err != nil {
		t.Fatal(err)
	}
	if want := maxDeletes + 100 + maxDeletes - 1; n != want {
		t.Fatalf("deleted %d, want %d", n, want)
	}
	for key, first := range map[string]uint64{"default/a": maxDeletes + 101, "default/b": 1, "default/c": maxDeletes} {
		var seqs []uint64
		if err := st.Evidence(key, 0, ^uint64(0), func(seq uint64, _ []byte) error { seqs = append(seqs, seq); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(seqs) == 0 || seqs[0] != first || seqs[len(seqs)-1] != uint64(counts[key]) || len(seqs) != counts[key]-int(first)+1 {
			t.Fatalf("%s: %d records left, from %v", key, len(seqs), seqs[:min(3, len(seqs))])
		}
	}
}

// TestEvidenceStamp: a saved record reads back byte for byte, with the
// time the store wrote it; a record stored bare by an older hub reads back
// unchanged with no time.
func TestEvidenceStamp(t *testing.T) {
	at := time.Date(2026, 12, 6, 10, 0, 0, 123, time.UTC)
	st, err := OpenBolt(filepath.Join(t.TempDir(), "s.db"), WithClock(func() time.Time { return at }))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	d := &Device{Key: "default/d", ID: "d", Fleet: "default", State: Trusted}
	rec := []byte{0xa1, 0x01, 0x02} // a CBOR map, as every record is
	if err := st.Save(d, nil, 1, rec); err != nil {
		t.Fatal(err)
	}
	if err := st.write(func(tx *bolt.Tx) error {
		return tx.Bucket(bEvidence).Bucket([]byte(d.Key)).Put(u64(2), []byte{0xa1, 0x03, 0x04})
	}); err != nil {
		t.Fatal(err)
	}
	want := map[uint64]struct {
		at  time.Time
		raw []byte
	}{1: {at, rec}, 2: {time.Time{}, []byte{0xa1, 0x03, 0x04}}}
	n := 0
	if err := st.EvidenceStored(d.Key, 0, 10, func(seq uint64, stored time.Time, raw []byte) error {
		n++
		if w := want[seq]; !stored.Equal(w.at) || !bytes.Equal(raw, w.raw) {
			t.Errorf("record %d: %v %x, want %v %x", seq, stored, raw, w.at, w.raw)
		}
		if got, err := st.EvidenceRecord(d.Key, seq); err != nil || !bytes.Equal(got, want[seq].raw) {
			t.Errorf("EvidenceRecord %d: %x, %v", seq, got, err)
		}
		return nil
	}); err != nil || n != 2 {
		t.Fatalf("%d records, %v", n, err)
	}
}
