package storesource

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/ratatouille/rat/evidence/failure"
	"github.com/ratatouille/rat/hub/ear"
	"github.com/ratatouille/rat/hub/store"
)

func crit(id string) failure.Event { return failure.Event{ID: id, Severity: failure.Critical} }

func TestFromDevice(t *testing.T) {
	yes, no := true, false
	base := func() store.Device {
		return store.Device{Key: "f/d", ID: "d", Fleet: "f", Group: "g", State: store.Trusted, AKPublic: []byte{1},
			EKVerified: true, PolicyDigest: "sha256:ab", Release: "r1", LastVerified: time.Unix(100, 0),
			EventLogVerified: true, SecureBoot: &yes}
	}
	tests := []struct {
		name    string
		edit    func(*store.Device)
		check   func(ear.Appraisal) bool
		verdict string
	}{
		{"trusted", func(*store.Device) {}, func(a ear.Appraisal) bool {
			return a.Trusted && a.AKBound && a.EKCertVerified && *a.SecureBoot && a.PolicyDigest == "sha256:ab" && a.Release == "r1"
		}, ear.IMAApproved},
		{"tofu never counts as a verified EK", func(d *store.Device) { d.TOFU = true }, func(a ear.Appraisal) bool {
			return !a.EKCertVerified && a.TOFU
		}, ear.IMAApproved},
		{"enrolling: AK not bound yet", func(d *store.Device) { d.State = store.Enrolling }, func(a ear.Appraisal) bool {
			return !a.AKBound && !a.Trusted
		}, ear.IMANone},
		{"no AK", func(d *store.Device) { d.AKPublic = nil }, func(a ear.Appraisal) bool { return !a.AKBound }, ear.IMAApproved},
		{"secure boot unknown without a verified event log", func(d *store.Device) { d.EventLogVerified = false }, func(a ear.Appraisal) bool {
			return a.SecureBoot == nil
		}, ear.IMAApproved},
		{"secure boot off", func(d *store.Device) { d.SecureBoot = &no }, func(a ear.Appraisal) bool {
			return a.SecureBoot != nil && !*a.SecureBoot
		}, ear.IMAApproved},
		{"no policy: not judged", func(d *store.Device) { d.PolicyDigest = "" }, func(a ear.Appraisal) bool { return true }, ear.IMANone},
		{"stale keeps the verdict of its last verification", func(d *store.Device) { d.State = store.Stale }, func(a ear.Appraisal) bool {
			return !a.Trusted
		}, ear.IMAApproved},
		{"file not in policy", func(d *store.Device) {
			d.State = store.Untrusted
			d.Failures = []failure.Event{crit(failure.IMANotInAllowlist)}
		}, func(a ear.Appraisal) bool {
			return len(a.Failures) == 1 && a.Failures[0] == failure.IMANotInAllowlist
		}, ear.IMAUnrecognized},
		{"tampered file wins over unknown file", func(d *store.Device) {
			d.State = store.Untrusted
			d.Failures = []failure.Event{crit(failure.IMANotInAllowlist), crit(failure.IMAInvalidHash)}
		}, func(a ear.Appraisal) bool { return len(a.Failures) == 2 }, ear.IMAContraindicated},
		{"quote failure: IMA not judged", func(d *store.Device) {
			d.State = store.Untrusted
			d.Failures = []failure.Event{crit(failure.QuoteInvalidSignature)}
		}, func(a ear.Appraisal) bool { return !a.Trusted }, ear.IMANone},
		{"warnings decide nothing", func(d *store.Device) {
			d.Failures = []failure.Event{{ID: failure.IMAExcluded, Severity: failure.Warning}}
		}, func(a ear.Appraisal) bool { return len(a.Failures) == 0 }, ear.IMAApproved},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := base()
			tc.edit(&d)
			a := FromDevice(&d)
			if a.IMAVerdict != tc.verdict {
				t.Errorf("IMA verdict %q, want %q", a.IMAVerdict, tc.verdict)
			}
			if !tc.check(a) || a.DeviceID != "d" || a.State != d.State {
				t.Errorf("appraisal %+v", a)
			}
		})
	}
}

func TestAppraiseAndReinstate(t *testing.T) {
	dir := t.TempDir()
	st, err := store.OpenBolt(filepath.Join(dir, "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	iss, err := ear.NewIssuer(ear.FileKeyStore{Dir: filepath.Join(dir, "keys")})
	if err != nil {
		t.Fatal(err)
	}
	d := &store.Device{Key: "fleet/edge", ID: "edge", Fleet: "fleet", Group: "g", State: store.Untrusted, AKPublic: []byte{1},
		PolicyDigest: "sha256:ab", LastVerified: time.Now(), Failures: []failure.Event{crit(failure.IMANotInAllowlist)}}
	if err := st.Save(d, nil, 0, nil); err != nil {
		t.Fatal(err)
	}
	src := &Source{Store: st, Fleet: "fleet", Issuer: iss}
	ctx := context.Background()

	for _, id := range []string{"fleet/edge", "other", "../edge", ""} {
		if _, err := src.Appraise(ctx, id); !errors.Is(err, ear.ErrUnknownDevice) {
			t.Errorf("Appraise(%q) = %v, want ErrUnknownDevice", id, err)
		}
	}
	if err := iss.Revoke("edge"); err != nil {
		t.Fatal(err)
	}
	a, err := src.Appraise(ctx, "edge")
	if err != nil || a.DeviceID != "edge" || a.Trusted {
		t.Fatalf("appraise: %+v %v", a, err)
	}
	if !iss.Revoked("edge") {
		t.Fatal("an UNTRUSTED device was reinstated")
	}
	for _, state := range []string{store.Stale, store.Enrolling} {
		d.State = state
		if err := st.Save(d, nil, 0, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := src.Appraise(ctx, "edge"); err != nil || !iss.Revoked("edge") {
			t.Fatalf("%s device reinstated (err %v)", state, err)
		}
	}
	d.State, d.Failures = store.Trusted, nil
	if err := st.Save(d, nil, 0, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Appraise(ctx, "edge"); err != nil || iss.Revoked("edge") {
		t.Fatalf("TRUSTED again but still revoked (err %v)", err)
	}
	if id, ok := src.DeviceID("fleet/edge"); !ok || id != "edge" {
		t.Errorf("DeviceID = %q %v", id, ok)
	}
	if _, ok := src.DeviceID("other/edge"); ok {
		t.Error("DeviceID accepted another fleet's key")
	}
}
