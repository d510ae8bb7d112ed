package rollout

// HubActor is the actor the hub records for the transitions it makes by
// itself (Advance); an operator or OTA server names itself.
const HubActor = "hub"

// Tally is what the hub knows of a group's devices for one release when it
// decides whether to advance it.
type Tally struct {
	// Reporting counts the devices whose last verified evidence reports the
	// release and was TRUSTED by its policy (or by the union window).
	Reporting int
	// Holding counts the other attesting devices: on another release, or
	// UNTRUSTED whatever they report. Each holds back completion.
	Holding int
	// NotCounted counts devices that neither report nor hold back:
	// enrolling, decommissioned, and silent (STALE) devices when the hub
	// does not wait for them. Informational.
	NotCounted int
}

// Advance returns the state the hub moves r to by itself, or "" for none:
//
//   - approved → rolling-out once one device reports r with verified
//     evidence (t.Reporting ≥ 1): the release is in the field;
//   - rolling-out → complete once every counted device reports it
//     (t.Reporting ≥ 1 and t.Holding == 0).
//
// It never moves a draft (nothing approved it), a complete or a retired
// release, and never retires anything: retiring is the statement that a
// release's digests are no longer acceptable, which only an accountable
// person makes. The judging rules (Judge) treat approved, rolling-out and
// complete alike, so an automatic transition changes no device's verdict.
func Advance(r *Release, t Tally) State {
	if r == nil || t.Reporting < 1 {
		return ""
	}
	switch r.State {
	case Approved:
		return RollingOut
	case RollingOut:
		if t.Holding == 0 {
			return Complete
		}
	}
	return ""
}
