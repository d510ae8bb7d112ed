package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ratatouille/rat/audit/policysig"
	"github.com/ratatouille/rat/audit/policysig/policysigtest"
	"github.com/ratatouille/rat/evidence/claims"
	"github.com/ratatouille/rat/evidence/failure"
	"github.com/ratatouille/rat/evidence/ima"
	"github.com/ratatouille/rat/evidence/protocol"
	"github.com/ratatouille/rat/evidence/runtimepolicy"
	"github.com/ratatouille/rat/hub/export"
	"github.com/ratatouille/rat/hub/store"
	"github.com/ratatouille/rat/hub/verifier"
	"github.com/ratatouille/rat/ota/rollout"
)

const relIssuer = "https://accounts.example.com"

// testClock is the verifier's clock, moved by the tests (the union window
// is judged at the record's verification time).
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// releaseHub is a hub whose policy signature check is the real one
// (audit/policysig) against a virtual Sigstore trusting release@example.com.
func releaseHub(t *testing.T, window time.Duration) (*Server, *policysigtest.Sigstore, *testClock) {
	t.Helper()
	vs, err := policysigtest.New()
	if err != nil {
		t.Fatal(err)
	}
	clk := &testClock{t: time.Now().UTC()}
	s, _ := startReleaseHub(t, filepath.Join(t.TempDir(), "hub.db"), vs, clk, func(c *Config) { c.ReleaseWindow = window })
	return s, vs, clk
}

// startReleaseHub starts a release hub on the store at path; stop (also
// run at cleanup, once) closes the hub and its store, so that a test can
// start another hub on the same store.
func startReleaseHub(t testing.TB, path string, vs *policysigtest.Sigstore, clk *testClock, cfg func(*Config)) (s *Server, stop func()) {
	t.Helper()
	v, err := policysig.New(vs.TrustedMaterial(), policysig.WithIdentity(policysig.Identity{Issuer: relIssuer, SAN: "release@example.com"}))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	check := func(group string, doc, bundle []byte) (*PolicyMeta, error) {
		if len(bundle) == 0 {
			return nil, errors.New("the policy has no Sigstore bundle")
		}
		res, err := v.Verify(doc, bundle)
		if err != nil {
			return nil, err
		}
		return &PolicyMeta{Signer: res.Signer(), Issuer: res.Issuer, Signed: res.IntegratedTime}, nil
	}
	c := Config{Store: st, Verifier: verifier.Config{AllowTOFUUnsafe: true, Now: clk.Now}, EmbeddedAddr: "127.0.0.1:0",
		PolicyCheck: check, StaleAfter: 24 * time.Hour, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if cfg != nil {
		cfg(&c)
	}
	s, err = Start(context.Background(), c)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() { once.Do(func() { s.Close(); st.Close() }) }
	t.Cleanup(stop)
	return s, stop
}

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// releasePolicy allows each path with the sha256 of its content.
func releasePolicy(t testing.TB, files map[string]string) []byte {
	t.Helper()
	allow := map[string][]string{}
	for p, c := range files {
		allow[p] = []string{sum(c)}
	}
	p, err := runtimepolicy.FromEntries(nil, runtimepolicy.WithAllowlist(allow))
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func signedRelease(t testing.TB, s *Server, vs *policysigtest.Sigstore, group, version string, doc []byte, signer string) {
	t.Helper()
	var bundle []byte
	if signer != "" {
		b, err := vs.SignBundle(signer, relIssuer, doc, policysigtest.Parts{})
		if err != nil {
			t.Fatal(err)
		}
		bundle = b
	}
	if _, err := s.AddRelease(group, version, sum("image "+version), doc, bundle, "release-ci"); err != nil {
		t.Fatal(err)
	}
}

// relRecord builds the device's next record: boot and release as given;
// fromZero resends the whole log as the first record of a new boot.
func relRecord(d *wireDevice, boot, release string, fromZero bool) []byte {
	d.t.Helper()
	var all []ima.Entry
	if fromZero {
		var err error
		if all, err = ima.ParseBinary(mustOpen(d.t, d.log)); err != nil {
			d.t.Fatal(err)
		}
	}
	_, raw := d.record(func(c *claims.Claims, es *[]ima.Entry, start *uint64) {
		c.BootID, c.Release = boot, release
		if fromZero {
			*es, *start = all, 0
		}
	})
	return raw
}

// TestReleaseRollout: a group on release N moves to N+1; devices report
// their release in every record and are judged by its policy, with the
// union of N and N+1 for the window after an update without reboot.
func TestReleaseRollout(t *testing.T) {
	const window = time.Hour
	s, vs, clk := releaseHub(t, window)
	shared := map[string]string{"/usr/bin/ok": "ok"}
	polN := releasePolicy(t, map[string]string{"/usr/bin/ok": "ok", "/usr/bin/app": "app N", "/usr/bin/legacy": "legacy N"})
	polN1 := releasePolicy(t, map[string]string{"/usr/bin/ok": "ok", "/usr/bin/app": "app N+1", "/usr/bin/new": "new"})
	signer := "release@example.com"
	signedRelease(t, s, vs, "edge", "N", polN, signer)
	signedRelease(t, s, vs, "edge", "N+1", polN1, signer)
	signedRelease(t, s, vs, "edge", "N+2", polN1, signer) // registered, never approved
	signedRelease(t, s, vs, "edge", "N+3", polN1, signer) // approved, then retired
	for _, v := range []string{"N", "N+1", "N+3"} {
		if _, err := s.ApproveRelease("edge", v, "release-owner", "signed by "+signer); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.SetReleaseState("edge", "N+3", rollout.Retired, "operator", "withdrawn"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetReleaseState("edge", "N+1", rollout.RollingOut, "ota-server", "rollout started"); err != nil {
		t.Fatal(err)
	}
	digestN1 := verifier.PolicyDigest(polN1)

	type step struct {
		advance   time.Duration
		measure   map[string]string
		boot      string // "" keeps boot-1
		release   string
		want      string // device state after the record
		wantEvent string // a failure id the device's events must hold
		wantInfo  string // a substring of a "release" event
		wantPol   string // the policy digest the record was judged by
	}
	cases := []struct {
		name  string
		first map[string]string // measured before the first record (release N)
		steps []step
	}{
		{name: "reboot into approved N+1", first: shared, steps: []step{
			{boot: "boot-2", release: "N+1", measure: map[string]string{"/usr/bin/app": "app N+1", "/usr/bin/new": "new"}, want: store.Trusted, wantInfo: "after a new boot", wantPol: digestN1},
			{release: "N+1", measure: map[string]string{"/usr/bin/ok2": "ok"}, want: store.Untrusted, wantEvent: "ima.validation.ima-ng.not_in_allowlist"},
		}},
		{name: "update without reboot, inside the window", first: map[string]string{"/usr/bin/ok": "ok", "/usr/bin/app": "app N"}, steps: []step{
			{release: "N+1", measure: map[string]string{"/usr/bin/app": "app N+1", "/usr/bin/new": "new"}, want: store.Trusted, wantInfo: "union of both"},
			// A process of N still starts N's tool: allowed by the union.
			{advance: window / 2, release: "N+1", measure: map[string]string{"/usr/bin/legacy": "legacy N"}, want: store.Trusted},
		}},
		{name: "update without reboot, after the window", first: map[string]string{"/usr/bin/ok": "ok", "/usr/bin/app": "app N"}, steps: []step{
			{release: "N+1", measure: map[string]string{"/usr/bin/app": "app N+1"}, want: store.Trusted, wantInfo: "union of both"},
			{advance: window + time.Minute, release: "N+1", measure: map[string]string{"/usr/bin/legacy": "legacy N"}, want: store.Untrusted,
				wantEvent: "ima.validation.ima-ng.not_in_allowlist", wantInfo: "digests retired", wantPol: digestN1},
		}},
		{name: "update without reboot to an unapproved release", first: shared, steps: []step{
			{release: "N+2", want: store.Untrusted, wantEvent: failure.OTAReleaseNotApproved},
		}},
		{name: "reboot into an unapproved release", first: shared, steps: []step{
			{boot: "boot-2", release: "N+2", want: store.Untrusted, wantEvent: failure.OTAReleaseNotApproved},
		}},
		{name: "switch to a retired release", first: shared, steps: []step{
			{boot: "boot-2", release: "N+3", want: store.Untrusted, wantEvent: failure.OTAReleaseRetired},
		}},
		{name: "unknown release", first: shared, steps: []step{
			{release: "2099.1", want: store.Untrusted, wantEvent: failure.OTAUnknownRelease},
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := "rel-" + string(rune('a'+i))
			d := newWireDevice(t, s, id)
			for p, c := range tc.first {
				d.measure(p, c)
			}
			d.enroll("edge")
			raw := relRecord(d, "boot-1", "N", false)
			ack := d.send(raw)
			if ack.Rejected || ack.State != store.Trusted {
				t.Fatalf("on release N: %+v", ack)
			}
			d.acceptRaw(raw, ack)
			boot := "boot-1"
			for j, st := range tc.steps {
				clk.Add(st.advance)
				for p, c := range st.measure {
					d.measure(p, c)
				}
				fromZero := st.boot != "" && st.boot != boot
				if st.boot != "" {
					boot = st.boot
				}
				raw := relRecord(d, boot, st.release, fromZero)
				ack := d.send(raw)
				if ack.Rejected {
					t.Fatalf("step %d refused: %s", j, ack.Reason)
				}
				d.acceptRaw(raw, ack)
				dev := state(t, s, id)
				evs, _ := s.Store().Events("default/"+id, 1000)
				if dev.State != st.want {
					t.Fatalf("step %d: state %s (%s), want %s; events %+v", j, dev.State, dev.Reason, st.want, evs)
				}
				if st.wantEvent != "" && !hasEvent(t, s, id, st.wantEvent) {
					t.Fatalf("step %d: no %s event: %+v", j, st.wantEvent, evs)
				}
				if st.wantEvent != "" && !strings.Contains(dev.Reason, st.wantEvent) {
					t.Fatalf("step %d: reason %q does not name %s", j, dev.Reason, st.wantEvent)
				}
				if st.wantInfo != "" && !hasRelease(evs, st.wantInfo) {
					t.Fatalf("step %d: no release event saying %q: %+v", j, st.wantInfo, evs)
				}
				if st.wantPol != "" && dev.PolicyDigest != st.wantPol {
					t.Fatalf("step %d: judged by %s, want %s", j, dev.PolicyDigest, st.wantPol)
				}
				if dev.Release != st.release {
					t.Fatalf("step %d: device release %q, want %q", j, dev.Release, st.release)
				}
			}
			// Every policy that judged a record (a release's or a union)
			// is stored: the device's evidence exports as a bundle.
			if err := export.Write(io.Discard, s.Store(), "default/"+id, export.Options{Hub: "rat-hub/test"}); err != nil {
				t.Fatalf("export: %v", err)
			}
		})
	}
}

// acceptRaw advances the device's chain after the hub accepted raw.
func (d *wireDevice) acceptRaw(raw []byte, ack *protocol.Ack) {
	d.t.Helper()
	var m protocol.Evidence
	if err := protocol.Unmarshal(raw, &m); err != nil {
		d.t.Fatal(err)
	}
	d.accepted(&m, ack)
}

func hasRelease(evs []store.Event, s string) bool {
	for _, e := range evs {
		if e.Kind == "release" && strings.Contains(e.Detail, s) {
			return true
		}
	}
	return false
}

// TestReleaseApproval: approval needs the group's signature check to pass
// over exactly the release's policy; the gate answers from the release
// state; approving a release the devices run clears them, retiring it
// turns them UNTRUSTED, and every transition is in the history.
func TestReleaseApproval(t *testing.T) {
	s, vs, _ := releaseHub(t, time.Hour)
	doc := releasePolicy(t, map[string]string{"/usr/bin/ok": "ok"})
	other := releasePolicy(t, map[string]string{"/usr/bin/ok": "ok", "/usr/bin/x": "x"})
	otherBundle, err := vs.SignBundle("release@example.com", relIssuer, other, policysigtest.Parts{})
	if err != nil {
		t.Fatal(err)
	}
	mustAdd := func(version string, doc, bundle []byte) {
		t.Helper()
		if _, err := s.AddRelease("edge", version, sum("img"), doc, bundle, "ci"); err != nil {
			t.Fatal(err)
		}
	}
	signedRelease(t, s, vs, "edge", "good", doc, "release@example.com")
	signedRelease(t, s, vs, "edge", "mallory", doc, "mallory@example.com")
	signedRelease(t, s, vs, "edge", "unsigned", doc, "")
	mustAdd("other-bundle", doc, otherBundle) // a valid bundle, for other bytes
	for _, tc := range []struct {
		version string
		wantErr error
	}{
		{"good", nil},
		{"mallory", ErrUnsigned},
		{"unsigned", ErrUnsigned},
		{"other-bundle", ErrUnsigned},
		{"missing", ErrNoSuchRelease},
	} {
		t.Run("approve "+tc.version, func(t *testing.T) {
			_, err := s.ApproveRelease("edge", tc.version, "owner", "")
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("approve %s: %v, want %v", tc.version, err, tc.wantErr)
			}
			r, err := s.ReleaseOf("edge", tc.version)
			if tc.wantErr == ErrNoSuchRelease {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := rollout.Draft
			if tc.wantErr == nil {
				want = rollout.Approved
			}
			if r.State != want {
				t.Fatalf("state %s, want %s", r.State, want)
			}
		})
	}
	if _, err := s.AddRelease("edge", "good", sum("img"), doc, nil, "ci"); !errors.Is(err, ErrReleaseExists) {
		t.Fatalf("re-registering: %v", err)
	}
	if _, err := s.AddRelease("edge", "bad/version", sum("img"), doc, nil, "ci"); !errors.Is(err, ErrReleaseInvalid) {
		t.Fatalf("version with a slash: %v", err)
	}
	if _, err := s.SetReleaseState("edge", "mallory", rollout.RollingOut, "ota", ""); !errors.Is(err, ErrReleaseInvalid) {
		t.Fatalf("draft → rolling-out: %v", err)
	}

	for _, tc := range []struct {
		version  string
		code     int
		approved bool
	}{
		{"good", 200, true}, {"mallory", 403, false}, {"nope", 404, false},
	} {
		a, code, err := s.Gate("edge", tc.version)
		if err != nil || code != tc.code || a.Approved != tc.approved || a.Version != tc.version {
			t.Fatalf("gate %s: %d %+v %v", tc.version, code, a, err)
		}
		if tc.approved && (a.PolicyDigest != verifier.PolicyDigest(doc) || a.ImageDigest != sum("image "+tc.version)) {
			t.Fatalf("gate %s digests: %+v", tc.version, a)
		}
	}

	// A device on the draft "unsigned" release is UNTRUSTED until it is
	// approved (with a signature the hub verifies), UNTRUSTED again when
	// the release is retired.
	d := newWireDevice(t, s, "dev")
	d.measure("/usr/bin/ok", "ok")
	d.enroll("edge")
	raw := relRecord(d, "boot-1", "mallory", false)
	ack := d.send(raw)
	if ack.State != store.Untrusted {
		t.Fatalf("on a draft release: %s", ack.State)
	}
	d.acceptRaw(raw, ack)
	// The fix is a properly signed release; the device moves to it while
	// it is still a draft, and approval re-judges it.
	signedRelease(t, s, vs, "edge", "mallory-fixed", doc, "release@example.com")
	raw = relRecord(d, "boot-1", "mallory-fixed", false)
	ack = d.send(raw)
	if ack.State != store.Untrusted {
		t.Fatalf("on a second draft: %s", ack.State)
	}
	d.acceptRaw(raw, ack)
	if _, err := s.ApproveRelease("edge", "mallory-fixed", "owner", "signed"); err != nil {
		t.Fatal(err)
	}
	if got := state(t, s, "dev"); got.State != store.Trusted {
		t.Fatalf("after approval: %s %s", got.State, got.Reason)
	}
	if _, err := s.SetReleaseState("edge", "mallory-fixed", rollout.Retired, "operator", "CVE"); err != nil {
		t.Fatal(err)
	}
	if got := state(t, s, "dev"); got.State != store.Untrusted || !strings.Contains(got.Reason, failure.OTAReleaseRetired) {
		t.Fatalf("after retirement: %s %s", got.State, got.Reason)
	}
	r, _ := s.ReleaseOf("edge", "mallory-fixed")
	var path []string
	for _, h := range r.History {
		path = append(path, string(h.To)+" by "+h.By)
	}
	// The device reported the release with verified evidence once it was
	// approved: the hub moved it on by itself (autorollout.go); it is the
	// group's only device, so completion followed at once.
	if got := strings.Join(path, ", "); got != "draft by release-ci, approved by owner, rolling-out by hub, complete by hub, retired by operator" {
		t.Fatalf("history: %s", got)
	}
	if r.Signature == nil || r.Signature.Identity != "release@example.com" {
		t.Fatalf("signature: %+v", r.Signature)
	}
	// A group without releases keeps its active policy.
	if s.hasReleases("plain") {
		t.Fatal("group without releases reported as having some")
	}
}

// TestReleaseDraftsChangeNothing: a group with only draft releases keeps
// its active group policy; its first approval switches it to judging by
// release, and a device reporting a release the group does not have is
// then re-judged UNTRUSTED (ota.release.unknown).
func TestReleaseDraftsChangeNothing(t *testing.T) {
	s, vs, _ := releaseHub(t, time.Hour)
	doc := releasePolicy(t, map[string]string{"/usr/bin/ok": "ok"})
	b, err := vs.SignBundle("release@example.com", relIssuer, doc, policysigtest.Parts{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetPolicy("fleet", doc, b, "test", ""); err != nil {
		t.Fatal(err)
	}
	signedRelease(t, s, vs, "fleet", "2.0", doc, "release@example.com")
	d := newWireDevice(t, s, "old")
	d.measure("/usr/bin/ok", "ok")
	d.enroll("fleet")
	raw := relRecord(d, "boot-1", "1.9", false)
	ack := d.send(raw)
	if ack.State != store.Trusted {
		evs, _ := s.Store().Events("default/old", 100)
		t.Fatalf("group with a draft only: %s %+v", ack.State, evs)
	}
	d.acceptRaw(raw, ack)
	if _, err := s.ApproveRelease("fleet", "2.0", "owner", ""); err != nil {
		t.Fatal(err)
	}
	if dev := state(t, s, "old"); dev.State != store.Untrusted || !strings.Contains(dev.Reason, failure.OTAUnknownRelease) || !strings.Contains(dev.Reason, "1.9") {
		t.Fatalf("after the first approval: %s %s", dev.State, dev.Reason)
	}
	// Moving to the approved release (a reboot) makes it TRUSTED again.
	raw = relRecord(d, "boot-2", "2.0", true)
	ack = d.send(raw)
	d.acceptRaw(raw, ack)
	if dev := state(t, s, "old"); dev.State != store.Untrusted {
		// The hub keeps UNTRUSTED until re-judged: a record alone does not clear.
		t.Fatalf("a record cleared UNTRUSTED: %s", dev.State)
	}
	if err := s.Clear("default/old"); err != nil {
		t.Fatal(err)
	}
	if dev := state(t, s, "old"); dev.State != store.Trusted || dev.PolicyDigest != verifier.PolicyDigest(doc) {
		t.Fatalf("after clear on release 2.0: %s %s", dev.State, dev.Reason)
	}
}
