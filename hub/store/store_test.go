package store

import (
	"bytes"
	"encoding/json"
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
	st, err := OpenBolt(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	want := fullDevice("default/d1")
	if err := st.Save(want, nil, 0, nil); err != nil {
		t.Fatal(err)
	}
	legacy := fullDevice("default/old")
	lj, _ := json.Marshal(legacy)
	if err := st.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bDevices).Put([]byte(legacy.Key), lj) }); err != nil {
		t.Fatal(err)
	}
	for _, d := range []*Device{want, legacy} {
		got, err := st.Device(d.Key)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := json.Marshal(d)
		b, _ := json.Marshal(got)
		if !bytes.Equal(a, b) {
			t.Errorf("%s read back differs:\n%s\n%s", d.Key, a, b)
		}
	}
	briefs, err := st.Briefs()
	if err != nil || len(briefs) != 2 {
		t.Fatalf("briefs: %v %d", err, len(briefs))
	}
	for _, b := range briefs {
		if b.State != Untrusted || !b.LastVerified.Equal(want.LastVerified) || b.ID != "d1" {
			t.Errorf("brief %+v", b)
		}
	}
	// Not a device record: refused, not misread.
	if err := decodeDevice([]byte{0xa0}, new(Device)); err == nil {
		t.Error("untagged CBOR accepted")
	}
}
