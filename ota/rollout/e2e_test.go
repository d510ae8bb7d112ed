package rollout_test

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ratatouille/rat/evidence/failure"
	"github.com/ratatouille/rat/evidence/ima"
	"github.com/ratatouille/rat/evidence/runtimepolicy"
	"github.com/ratatouille/rat/ota/predict"
	"github.com/ratatouille/rat/ota/rollout"
	"github.com/ratatouille/rat/ota/rootfs"
	"github.com/ratatouille/rat/ota/testimage"
)

// approvedRelease predicts the exec policy of a squashfs image of src and
// registers it as an approved release.
func approvedRelease(t *testing.T, src, version string, approve bool) (*rollout.Release, *runtimepolicy.Policy) {
	t.Helper()
	img := testimage.Squashfs(t, src, "gzip")
	r, err := rootfs.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	res, err := predict.Predict(r, predict.WithIMAPolicy(predict.Exec))
	if err != nil {
		t.Fatal(err)
	}
	b, err := res.Policy.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	pol, err := runtimepolicy.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	imgBytes, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	rel, err := rollout.NewRelease("edge", version, hexSum(imgBytes), hexSum(b))
	if err != nil {
		t.Fatal(err)
	}
	if approve {
		rel.Signature = &rollout.Signature{PolicyDigest: rel.PolicyDigest, Identity: "release@example.com", VerifiedAt: t0}
		if err := rel.Transition(rollout.Approved, t0, "release-owner", "signed"); err != nil {
			t.Fatal(err)
		}
	}
	return rel, pol
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func fileEntry(t *testing.T, root, p string) ima.Entry {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, p))
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	e, err := ima.NewNgEntry(10, "sha256", s[:], p)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestRolloutEndToEnd: a group on release N moves to N+1, built as real
// images from real binaries with predicted policies; devices are judged
// by rollout.Judge and their IMA logs by runtimepolicy.Evaluate.
func TestRolloutEndToEnd(t *testing.T) {
	srcN := testimage.Source(t)
	srcN1 := testimage.Source(t)
	// N+1 ships a changed ls and a new tool.
	ls, err := os.ReadFile(filepath.Join(srcN1, "usr/bin/ls"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(srcN1, "usr/bin/ls"), append(ls, 0), 0o755); err != nil {
		t.Fatal(err)
	}
	tool, err := os.ReadFile(filepath.Join(srcN1, "usr/bin/true"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(srcN1, "usr/bin/newtool"), append(tool, 1), 0o755); err != nil {
		t.Fatal(err)
	}
	relN, polN := approvedRelease(t, srcN, "N", true)
	relN1, polN1 := approvedRelease(t, srcN1, "N+1", true)
	relN2, _ := approvedRelease(t, srcN1, "N+2", false) // never approved
	if err := relN.Transition(rollout.RollingOut, t0, "hub", ""); err != nil {
		t.Fatal(err)
	}
	if err := relN.Transition(rollout.Complete, t0, "hub", ""); err != nil {
		t.Fatal(err)
	}
	if err := relN1.Transition(rollout.RollingOut, t0, "hub", "rollout window opened"); err != nil {
		t.Fatal(err)
	}
	releases := map[string]*rollout.Release{"N": relN, "N+1": relN1, "N+2": relN2}
	policies := map[string]*runtimepolicy.Policy{"N": polN, "N+1": polN1}

	logN := []ima.Entry{fileEntry(t, srcN, "/usr/bin/ls"), fileEntry(t, srcN, "/usr/bin/cat")}
	noReboot := append(append([]ima.Entry{}, logN...), fileEntry(t, srcN1, "/usr/bin/ls"), fileEntry(t, srcN1, "/usr/bin/newtool"))
	rebooted := []ima.Entry{fileEntry(t, srcN1, "/usr/bin/ls"), fileEntry(t, srcN1, "/usr/bin/newtool"), fileEntry(t, srcN1, "/usr/bin/cat")}
	window := 6 * time.Hour

	tests := []struct {
		name        string
		dev         rollout.Device
		log         []ima.Entry
		now         time.Time
		wantTrusted bool
		wantEvent   string // lifecycle or IMA event id
	}{
		{"steady on N", rollout.Device{Release: "N", Previous: "N"}, logN, t0, true, ""},
		{"package update inside the window", rollout.Device{Release: "N+1", Previous: "N", SwitchedAt: t0}, noReboot, t0.Add(time.Hour), true, ""},
		{"package update after the window", rollout.Device{Release: "N+1", Previous: "N", SwitchedAt: t0}, noReboot, t0.Add(7 * time.Hour), false, failure.IMARuntimePolicyHash},
		{"rebooted into N+1", rollout.Device{Release: "N+1", Previous: "N", BootChanged: true}, rebooted, t0.Add(time.Hour), true, ""},
		{"switched to unapproved N+2", rollout.Device{Release: "N+2", Previous: "N+1", BootChanged: true}, rebooted, t0.Add(time.Hour), false, rollout.EventNotApproved},
		{"unknown release", rollout.Device{Release: "N+3", Previous: "N+1", BootChanged: true}, rebooted, t0.Add(time.Hour), false, failure.OTAUnknownRelease},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := rollout.Judge(releases, tc.dev, tc.now, window)
			var evs []failure.Event
			if d.Event != nil {
				evs = []failure.Event{*d.Event}
			} else {
				var ps []*runtimepolicy.Policy
				for _, v := range d.Policies {
					ps = append(ps, policies[v])
				}
				u, err := rollout.Union(ps...)
				if err != nil {
					t.Fatal(err)
				}
				evs = runtimepolicy.Evaluate(u, tc.log)
			}
			if trusted := len(evs) == 0; trusted != tc.wantTrusted {
				t.Fatalf("trusted %v, want %v (%s): %v", trusted, tc.wantTrusted, d.Reason, evs)
			}
			if tc.wantEvent != "" && (evs[0].ID != tc.wantEvent) {
				t.Fatalf("event %v, want %s", evs, tc.wantEvent)
			}
		})
	}
	// Without the union, the no-reboot device would be a false alarm.
	if evs := runtimepolicy.Evaluate(polN1, noReboot); len(evs) == 0 {
		t.Fatal("N+1 alone accepts N's ls: the fixture does not change ls")
	} else if !strings.Contains(evs[0].String(), "/usr/bin/ls") {
		t.Fatalf("unexpected event %v", evs[0])
	}
	// The gate: N+1 may be rolled out, N+2 may not.
	if ok, _ := rollout.Gate(relN1); !ok {
		t.Error("gate refuses approved N+1")
	}
	if ok, reason := rollout.Gate(relN2); ok || !strings.Contains(reason, "not approved") {
		t.Errorf("gate for draft N+2: %v %s", ok, reason)
	}
}

func TestUnion(t *testing.T) {
	a, b := runtimepolicy.Empty(), runtimepolicy.Empty()
	d1, d2 := strings.Repeat("a", 64), strings.Repeat("b", 64)
	a.Digests = map[string][]string{"/x": {d1}}
	b.Digests = map[string][]string{"/x": {d2}, "/y": {d1}}
	b.Excludes = []string{"/tmp/.*"}
	u, err := rollout.Union(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(u.Digests["/x"]) != 2 || len(u.Digests["/y"]) != 1 || !u.Excluded("/tmp/z") {
		t.Fatalf("union %+v", u)
	}
	if len(a.Digests["/x"]) != 1 {
		t.Fatal("union changed its input")
	}
	c := runtimepolicy.Empty()
	c.VerificationKeys = "[\"x\"]"
	if _, err := rollout.Union(a, c); err == nil {
		t.Error("union of policies with different verification keys accepted")
	}
	if _, err := rollout.Union(); err == nil {
		t.Error("empty union accepted")
	}
}
