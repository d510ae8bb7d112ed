package verifier

import (
	"fmt"
	"time"

	"github.com/ratatouille/rat/evidence/failure"
	"github.com/ratatouille/rat/evidence/runtimepolicy"
	"github.com/ratatouille/rat/hub/store"
)

// ReleaseQuery is what the policy step knows of the release a device runs
// when its group judges devices by release (docs/ota.md).
type ReleaseQuery struct {
	Group string
	// Release is the release the device reports in this record.
	Release string
	// From is the release the device ran before it switched to Release
	// without a reboot ("" when it rebooted into Release or never
	// switched); SwitchedAt is when the hub first saw the switch.
	From       string
	SwitchedAt time.Time
	// NewBoot is true for the first record of a boot.
	NewBoot bool
}

// ReleaseVerdict is which policy judges the device, or why none may.
type ReleaseVerdict struct {
	Policy *runtimepolicy.Policy
	Digest string
	// Union is true when Policy is the union of From's and Release's
	// policies (the bounded window after an update without reboot).
	Union bool
	// Event, when set, makes the device UNTRUSTED (unknown, unapproved or
	// retired release); Policy is nil then.
	Event *failure.Event
	// Reason is a sentence for the device's event history.
	Reason string
}

// ReleaseSource judges a device by the release it reports. It returns
// ok false for a group without releases: such a group keeps being judged
// by its active policy (Config.Policies).
type ReleaseSource func(q ReleaseQuery, now time.Time) (v ReleaseVerdict, ok bool)

// releaseError carries a release verdict's event out of policyFor, so
// that the policy step records it instead of "no policy" (and never
// takes a baseline from a device on an unknown release).
type releaseError struct{ e failure.Event }

func (e *releaseError) Error() string { return e.e.String() }

// policyFor returns the policy that judges this record of d (nd is the
// updated record, whose Release is the one the claims report). For a group
// with releases it tracks release switches in nd and records each one,
// and the end of a rollout window, as a device event in out.
func (v *Verifier) policyFor(d, nd *store.Device, newBoot bool, seq uint64, now time.Time, out *Outcome) (*runtimepolicy.Policy, string, error) {
	if v.cfg.Releases == nil {
		return v.cfg.Policies(d.Group)
	}
	from, since := d.ReleaseFrom, d.ReleaseSwitched
	changed := nd.Release != d.Release
	switch {
	case newBoot:
		// A fresh boot's measurement list holds nothing of the old release.
		from, since = "", time.Time{}
	case changed && d.Release != "":
		from, since = d.Release, now
	}
	q := ReleaseQuery{Group: d.Group, Release: nd.Release, From: from, SwitchedAt: since, NewBoot: newBoot}
	vd, ok := v.cfg.Releases(q, now)
	if !ok {
		return v.cfg.Policies(d.Group)
	}
	nd.ReleaseFrom, nd.ReleaseSwitched = from, since
	how := "without a reboot"
	if newBoot {
		how = "after a new boot"
	}
	switch {
	case changed:
		out.Events = append(out.Events, v.ev("release", seq, fmt.Sprintf("release %q → %q %s: %s", d.Release, nd.Release, how, vd.Reason), nil))
	case from != "" && !vd.Union && vd.Event == nil:
		out.Events = append(out.Events, v.ev("release", seq, vd.Reason, nil))
	}
	if vd.Event != nil {
		return nil, "", &releaseError{*vd.Event}
	}
	if !vd.Union {
		// The union no longer applies (window closed, or the old release
		// was never acceptable): from now on the release alone judges.
		nd.ReleaseFrom, nd.ReleaseSwitched = "", time.Time{}
	}
	return vd.Policy, vd.Digest, nil
}
