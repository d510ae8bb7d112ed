package rollout_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ratatouille/rat/evidence/failure"
	"github.com/ratatouille/rat/ota/rollout"
)

const (
	polN  = "1111111111111111111111111111111111111111111111111111111111111111"
	polN1 = "2222222222222222222222222222222222222222222222222222222222222222"
	img   = "3333333333333333333333333333333333333333333333333333333333333333"
)

var t0 = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

func release(t *testing.T, version, pol string, state rollout.State) *rollout.Release {
	t.Helper()
	r, err := rollout.NewRelease("edge", version, img, pol)
	if err != nil {
		t.Fatal(err)
	}
	path := map[rollout.State][]rollout.State{
		rollout.Draft:      nil,
		rollout.Approved:   {rollout.Approved},
		rollout.RollingOut: {rollout.Approved, rollout.RollingOut},
		rollout.Complete:   {rollout.Approved, rollout.RollingOut, rollout.Complete},
		rollout.Retired:    {rollout.Approved, rollout.RollingOut, rollout.Complete, rollout.Retired},
	}[state]
	r.Signature = &rollout.Signature{PolicyDigest: pol, Identity: "release@example.com", VerifiedAt: t0}
	for _, s := range path {
		if err := r.Transition(s, t0, "ops", ""); err != nil {
			t.Fatal(err)
		}
	}
	if state == rollout.Draft {
		r.Signature = nil
	}
	return r
}

func TestTransitions(t *testing.T) {
	tests := []struct {
		name    string
		from    rollout.State
		to      rollout.State
		sig     *rollout.Signature
		wantErr string
	}{
		{"approve signed", rollout.Draft, rollout.Approved, &rollout.Signature{PolicyDigest: polN}, ""},
		{"approve unsigned", rollout.Draft, rollout.Approved, nil, "no verified policy signature"},
		{"approve with signature over another policy", rollout.Draft, rollout.Approved, &rollout.Signature{PolicyDigest: polN1}, "covers policy"},
		{"approve uppercase digest signature", rollout.Draft, rollout.Approved, &rollout.Signature{PolicyDigest: strings.ToUpper(polN)}, ""},
		{"draft straight to rollout", rollout.Draft, rollout.RollingOut, &rollout.Signature{PolicyDigest: polN}, "cannot become"},
		{"start rollout", rollout.Approved, rollout.RollingOut, nil, ""},
		{"complete", rollout.RollingOut, rollout.Complete, nil, ""},
		{"abort rollout", rollout.RollingOut, rollout.Retired, nil, ""},
		{"retire draft", rollout.Draft, rollout.Retired, nil, ""},
		{"retired is terminal", rollout.Retired, rollout.Approved, &rollout.Signature{PolicyDigest: polN}, "cannot become"},
		{"complete cannot roll out again", rollout.Complete, rollout.RollingOut, nil, "cannot become"},
		{"no self transition", rollout.Approved, rollout.Approved, nil, "cannot become"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := release(t, "1.0", polN, tc.from)
			r.Signature = tc.sig
			before := len(r.History)
			err := r.Transition(tc.to, t0.Add(time.Hour), "alice", "test")
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if r.State != tc.to || len(r.History) != before+1 || r.History[before] != (rollout.Transition{From: tc.from, To: tc.to, At: t0.Add(time.Hour), By: "alice", Reason: "test"}) {
					t.Fatalf("state %s history %+v", r.State, r.History)
				}
				return
			}
			if !errors.Is(err, rollout.ErrTransition) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			if r.State != tc.from || len(r.History) != before {
				t.Fatal("refused transition changed the release")
			}
		})
	}
	r := release(t, "1.0", polN, rollout.Draft)
	r.Signature = &rollout.Signature{PolicyDigest: polN}
	if err := r.Transition(rollout.Approved, t0, "", ""); err == nil {
		t.Error("anonymous transition accepted")
	}
}

func TestNewReleaseChecks(t *testing.T) {
	for _, tc := range []struct{ group, version, image, policy string }{
		{"", "1", img, polN},
		{"g", "", img, polN},
		{"g", "1/2", img, polN},
		{"g", "1", img, "abc"},
		{"g", "1", "xyz", polN},
	} {
		if _, err := rollout.NewRelease(tc.group, tc.version, tc.image, tc.policy); err == nil {
			t.Errorf("accepted %+v", tc)
		}
	}
}

func TestGate(t *testing.T) {
	tests := []struct {
		state rollout.State
		want  bool
	}{
		{rollout.Draft, false}, {rollout.Approved, true}, {rollout.RollingOut, true}, {rollout.Complete, true}, {rollout.Retired, false},
	}
	for _, tc := range tests {
		if ok, reason := rollout.Gate(release(t, "1", polN, tc.state)); ok != tc.want {
			t.Errorf("%s: gate %v (%s), want %v", tc.state, ok, reason, tc.want)
		}
	}
	if ok, _ := rollout.Gate(nil); ok {
		t.Error("unknown release passes the gate")
	}
}

func TestJudge(t *testing.T) {
	rels := map[string]*rollout.Release{
		"N":       release(t, "N", polN, rollout.Complete),
		"N+1":     release(t, "N+1", polN1, rollout.RollingOut),
		"draft":   release(t, "draft", polN1, rollout.Draft),
		"retired": release(t, "retired", polN, rollout.Retired),
	}
	win := 6 * time.Hour
	switched := t0
	tests := []struct {
		name      string
		dev       rollout.Device
		now       time.Time
		want      []string
		wantEvent string
		wantUntil time.Time
	}{
		{"steady on N", rollout.Device{Release: "N", Previous: "N"}, t0, []string{"N"}, "", time.Time{}},
		{"first attestation", rollout.Device{Release: "N+1"}, t0, []string{"N+1"}, "", time.Time{}},
		{"rebooted into N+1", rollout.Device{Release: "N+1", Previous: "N", BootChanged: true}, t0, []string{"N+1"}, "", time.Time{}},
		{"package update, inside window", rollout.Device{Release: "N+1", Previous: "N", SwitchedAt: switched}, t0.Add(time.Hour), []string{"N", "N+1"}, "", t0.Add(win)},
		{"package update, window edge", rollout.Device{Release: "N+1", Previous: "N", SwitchedAt: switched}, t0.Add(win), []string{"N+1"}, "", time.Time{}},
		{"package update, after window", rollout.Device{Release: "N+1", Previous: "N", SwitchedAt: switched}, t0.Add(48 * time.Hour), []string{"N+1"}, "", time.Time{}},
		{"package update, unknown switch time", rollout.Device{Release: "N+1", Previous: "N"}, t0, []string{"N+1"}, "", time.Time{}},
		{"package update from a draft", rollout.Device{Release: "N+1", Previous: "draft", SwitchedAt: switched}, t0, []string{"N+1"}, "", time.Time{}},
		{"package update from a retired release", rollout.Device{Release: "N+1", Previous: "retired", SwitchedAt: switched}, t0, []string{"N+1"}, "", time.Time{}},
		{"rolled back to N", rollout.Device{Release: "N", Previous: "N+1", BootChanged: true}, t0, []string{"N"}, "", time.Time{}},
		{"unknown release", rollout.Device{Release: "N+2", Previous: "N+1"}, t0, nil, failure.OTAUnknownRelease, time.Time{}},
		{"no release reported", rollout.Device{}, t0, nil, failure.OTAUnknownRelease, time.Time{}},
		{"unapproved release", rollout.Device{Release: "draft", Previous: "N", BootChanged: true}, t0, nil, rollout.EventNotApproved, time.Time{}},
		{"retired release", rollout.Device{Release: "retired", Previous: "retired"}, t0, nil, rollout.EventRetired, time.Time{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := rollout.Judge(rels, tc.dev, tc.now, win)
			if !slices.Equal(d.Policies, tc.want) || !d.Until.Equal(tc.wantUntil) {
				t.Fatalf("policies %v until %v, want %v until %v (%s)", d.Policies, d.Until, tc.want, tc.wantUntil, d.Reason)
			}
			switch {
			case tc.wantEvent == "" && d.Event != nil:
				t.Fatalf("unexpected event %v", d.Event)
			case tc.wantEvent != "" && (d.Event == nil || d.Event.ID != tc.wantEvent || d.Event.Severity != failure.Critical):
				t.Fatalf("event %v, want %s", d.Event, tc.wantEvent)
			}
			if d.Reason == "" {
				t.Fatal("no reason given")
			}
		})
	}
	if d := rollout.Judge(rels, rollout.Device{Release: "N+1", Previous: "N", SwitchedAt: switched}, t0.Add(23*time.Hour), 0); len(d.Policies) != 2 {
		t.Errorf("default window: %v", d.Policies)
	}
}

func TestAnswer(t *testing.T) {
	tests := []struct {
		name       string
		rel        *rollout.Release
		wantStatus int
		wantOK     bool
	}{
		{"unknown", nil, 404, false},
		{"draft", release(t, "2", polN1, rollout.Draft), 403, false},
		{"approved", release(t, "2", polN1, rollout.Approved), 200, true},
		{"retired", release(t, "2", polN1, rollout.Retired), 403, false},
	}
	for _, tc := range tests {
		a, status := rollout.Answer("edge", "2", tc.rel)
		if status != tc.wantStatus || a.Approved != tc.wantOK || a.Group != "edge" || a.Version != "2" || a.Reason == "" {
			t.Errorf("%s: %d %+v", tc.name, status, a)
		}
		if tc.rel != nil && a.PolicyDigest != polN1 {
			t.Errorf("%s: policy digest %q", tc.name, a.PolicyDigest)
		}
	}
}

// TestAdvance: the hub's own transitions. Only approved and rolling-out
// releases move, and only on verified reports; nothing is ever retired.
func TestAdvance(t *testing.T) {
	tests := []struct {
		name  string
		state rollout.State
		tally rollout.Tally
		want  rollout.State
	}{
		{"approved, nobody reports it", rollout.Approved, rollout.Tally{Holding: 5}, ""},
		{"approved, first report", rollout.Approved, rollout.Tally{Reporting: 1, Holding: 4}, rollout.RollingOut},
		{"approved, every device already reports it", rollout.Approved, rollout.Tally{Reporting: 3}, rollout.RollingOut},
		{"rolling-out, some hold back", rollout.RollingOut, rollout.Tally{Reporting: 4, Holding: 1}, ""},
		{"rolling-out, all report", rollout.RollingOut, rollout.Tally{Reporting: 5, NotCounted: 2}, rollout.Complete},
		{"rolling-out, nobody counted reports", rollout.RollingOut, rollout.Tally{NotCounted: 5}, ""},
		{"draft, every device reports it", rollout.Draft, rollout.Tally{Reporting: 5}, ""},
		{"retired, every device reports it", rollout.Retired, rollout.Tally{Reporting: 5}, ""},
		{"complete stays", rollout.Complete, rollout.Tally{Reporting: 1, Holding: 9}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := release(t, "N+1", polN1, tc.state)
			if got := rollout.Advance(r, tc.tally); got != tc.want {
				t.Fatalf("Advance(%s, %+v) = %q, want %q", tc.state, tc.tally, got, tc.want)
			}
			if tc.want != "" {
				if err := r.Transition(tc.want, t0, rollout.HubActor, "test"); err != nil {
					t.Fatalf("the lifecycle refuses Advance's answer: %v", err)
				}
			}
		})
	}
	if got := rollout.Advance(nil, rollout.Tally{Reporting: 1}); got != "" {
		t.Fatalf("Advance(nil) = %q", got)
	}
}
