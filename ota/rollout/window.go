package rollout

import (
	"fmt"
	"time"

	"github.com/ratatouille/rat/evidence/failure"
)

// DefaultUnionWindow bounds how long a device updated without a reboot
// is judged by the union of N and N+1: long enough for long-running
// processes of N to be restarted, short enough that N's digests (which
// may include the fixed vulnerability) do not stay allowed.
const DefaultUnionWindow = 24 * time.Hour

// Device is what the hub knows of one device at an attestation.
type Device struct {
	// Release is the release the device reports running now.
	Release string
	// Previous is the release it reported at its previous attestation
	// ("" if none).
	Previous string
	// BootChanged is true when this attestation is the first of a new
	// boot (reset count or boot_aggregate changed).
	BootChanged bool
	// SwitchedAt is when the device first reported Release without a
	// reboot since reporting Previous (zero when it rebooted into it).
	SwitchedAt time.Time
}

// Decision says which release policies judge a device's IMA log.
type Decision struct {
	// Policies are the release versions whose policies judge; two means
	// the union (an entry is allowed if either allows it). Empty means the
	// device is UNTRUSTED with Event.
	Policies []string
	// Until is when a union stops applying (zero otherwise).
	Until time.Time
	Event *failure.Event
	// Reason is a sentence for the operator.
	Reason string
}

// Judge decides which policies judge d at time now, given the group's
// releases by version and the union window (0 means DefaultUnionWindow).
//
// A device that rebooted into a new release is judged by that release
// alone at once: a fresh boot's log holds nothing of N. A device whose
// release changed without a reboot (a package-level update, the Keylime
// #1515 case) still carries N's measurements in its log, so it is judged
// by N ∪ N+1 until the window closes, then by N+1 alone. A device on a
// release that is unknown, not approved, or retired is UNTRUSTED.
func Judge(releases map[string]*Release, d Device, now time.Time, window time.Duration) Decision {
	if window <= 0 {
		window = DefaultUnionWindow
	}
	cur, ok := releases[d.Release]
	if !ok || d.Release == "" {
		return untrusted(failure.OTAUnknownRelease, "device reports release %q, which the group does not have", d.Release)
	}
	switch cur.State {
	case Draft:
		return untrusted(EventNotApproved, "device runs release %s, which was never approved", d.Release)
	case Retired:
		return untrusted(EventRetired, "device runs release %s, which is retired", d.Release)
	}
	if d.BootChanged || d.Previous == "" || d.Previous == d.Release {
		return Decision{Policies: []string{d.Release}, Reason: "judged by the policy of release " + d.Release}
	}
	prev, ok := releases[d.Previous]
	if !ok || prev.State == Draft || prev.State == Retired {
		// The log also holds measurements of a release that is not (or no
		// longer) acceptable: judging by the new policy alone reports them.
		return Decision{Policies: []string{d.Release}, Reason: fmt.Sprintf("updated without reboot from %s, which is not an approved release: judged by %s alone", d.Previous, d.Release)}
	}
	if d.SwitchedAt.IsZero() {
		return Decision{Policies: []string{d.Release}, Reason: "updated without reboot at an unknown time: judged by " + d.Release + " alone"}
	}
	until := d.SwitchedAt.Add(window)
	if now.Before(until) {
		return Decision{Policies: []string{d.Previous, d.Release}, Until: until,
			Reason: fmt.Sprintf("updated from %s to %s without reboot: judged by the union of both until %s", d.Previous, d.Release, until.UTC().Format(time.RFC3339))}
	}
	return Decision{Policies: []string{d.Release}, Reason: fmt.Sprintf("union window of %s→%s closed at %s: %s's digests retired for this device; reboot clears remaining old measurements", d.Previous, d.Release, until.UTC().Format(time.RFC3339), d.Previous)}
}

func untrusted(id, format string, a ...any) Decision {
	msg := fmt.Sprintf(format, a...)
	return Decision{Event: &failure.Event{ID: id, Severity: failure.Critical, Context: msg}, Reason: msg}
}
