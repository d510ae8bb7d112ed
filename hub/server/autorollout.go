package server

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ratatouille/rat/hub/store"
	"github.com/ratatouille/rat/ota/rollout"
)

// The hub moves a release approved → rolling-out when the first device of
// its group reports it with verified evidence, and rolling-out → complete
// when every counted device does (rollout.Advance, docs/ota.md "Automatic
// transitions"). It learns of reports from noteRollout, which runs after
// every device write the hub stores; it keeps a tally of every device's
// standing so that a report costs a map update, not a scan of the fleet.

// rolloutTally is the standing of every device, by group, for the hub's
// automatic release transitions. It is built at Start, from the devices'
// briefs (store.Bolt.Briefs: key, group, release and state, ≈ 100 bytes
// a device) before the hub takes any message, and then kept by
// noteRollout. It was built from every whole device record at the first
// write of a group with an approved or rolling-out release, with every
// device write waiting: seconds at 100,000 devices.
type rolloutTally struct {
	// mu is taken before relMu, never after it.
	mu     sync.Mutex
	devs   map[string]standing // by device key
	groups map[string]*groupTally
}

// standing is what completion needs of one device.
type standing struct {
	group, release, state string
	// counted: the device holds back completion unless it reports the
	// release; reporting: counted and its last verified evidence reports
	// release and was TRUSTED.
	counted, reporting bool
}

type groupTally struct {
	total, counted int
	reporting      map[string]int // counted devices reporting each release
}

// standingOf classifies d. TRUSTED devices report their release.
// UNTRUSTED devices hold back completion whatever they report (their
// evidence verified, their release's policy did not accept it): fix and
// clear or decommission them. ENROLLING and DECOMMISSIONED devices do not
// count. STALE devices (no verified evidence for StaleAfter) count only
// with Config.ReleaseWaitStale, and then as reporting the release of
// their last verified record (STALE follows TRUSTED only).
func (s *Server) standingOf(group, release, state string) standing {
	st := standing{group: group, release: release, state: state}
	switch state {
	case store.Trusted:
		st.counted, st.reporting = true, release != ""
	case store.Untrusted:
		st.counted = true
	case store.Stale:
		st.counted = s.cfg.ReleaseWaitStale
		st.reporting = st.counted && release != ""
	}
	return st
}

func (t *rolloutTally) put(key string, st standing) {
	if old, ok := t.devs[key]; ok {
		t.count(old, -1)
	}
	t.devs[key] = st
	t.count(st, 1)
}

func (t *rolloutTally) count(st standing, n int) {
	g := t.groups[st.group]
	if g == nil {
		g = &groupTally{reporting: map[string]int{}}
		t.groups[st.group] = g
	}
	g.total += n
	if st.counted {
		g.counted += n
	}
	if st.reporting {
		g.reporting[st.release] += n
	}
}

func (t *rolloutTally) of(group, version string) rollout.Tally {
	g := t.groups[group]
	if g == nil {
		return rollout.Tally{}
	}
	r := g.reporting[version]
	return rollout.Tally{Reporting: r, Holding: g.counted - r, NotCounted: g.total - g.counted}
}

// buildTally makes the tally from every device's brief, read from the
// store at Start before any worker can write a device, so every device
// write (and its noteRollout) applies on top of it. A Partial brief
// (written by a hub that kept no group and release in briefs) is not
// taken as "no group, no release": the device's record is read instead.
func (s *Server) buildTally(briefs []store.DeviceBrief) error {
	t := &s.rel.track
	t.mu.Lock()
	defer t.mu.Unlock()
	t.devs, t.groups = make(map[string]standing, len(briefs)), map[string]*groupTally{}
	for i := range briefs {
		b := &briefs[i]
		group, release, state := b.Group, b.Release, b.State
		if b.Partial {
			d, err := s.st.Device(b.Key)
			if err != nil {
				return fmt.Errorf("server: rollout tally: device %s: %w", b.Key, err)
			}
			group, release, state = d.Group, d.Release, d.State
		}
		t.put(b.Key, s.standingOf(group, release, state))
	}
	return nil
}

// advancing lists the group's approved and rolling-out releases: the
// only ones the hub moves by itself.
func (s *Server) advancing(group string) []string {
	s.relMu.Lock()
	defer s.relMu.Unlock()
	g, err := s.loadGroup(group)
	if err != nil || g == nil {
		return nil
	}
	return g.advancing
}

// noteRollout is called after every device write the hub stored (save),
// in the device's worker: it updates d's standing and makes the automatic
// transitions of d's group's releases (and of its former group's, when a
// re-enrollment moved it).
func (s *Server) noteRollout(d *store.Device) {
	if d == nil || d.Group == "" {
		return
	}
	vs := s.advancing(d.Group)
	t := &s.rel.track
	t.mu.Lock()
	defer t.mu.Unlock()
	old, had := t.devs[d.Key]
	t.put(d.Key, s.standingOf(d.Group, d.Release, d.State))
	s.advanceGroup(d.Group, d.Key, vs)
	if had && old.group != d.Group {
		s.advanceGroup(old.group, d.Key, s.advancing(old.group))
	}
}

// advanceGroup moves each of versions as rollout.Advance says, as many
// steps as apply (a group with one device goes approved → rolling-out →
// complete on its first report). Callers hold s.rel.track.mu.
func (s *Server) advanceGroup(group, key string, versions []string) {
	t := &s.rel.track
	for _, v := range versions {
		for range 2 {
			r, err := s.ReleaseOf(group, v)
			if err != nil {
				s.log.Error("rollout", "group", group, "version", v, "err", err)
				break
			}
			tally := t.of(group, v)
			to := rollout.Advance(&r.Release, tally)
			if to == "" {
				break
			}
			who := s.reporter(group, v, key)
			var reason string
			if to == rollout.RollingOut {
				reason = fmt.Sprintf("first device of %s reporting it with verified evidence: %s", group, who)
			} else {
				reason = fmt.Sprintf("all %d attesting devices of %s report it with verified evidence (last: %s)%s", tally.Reporting, group, who, s.notCounted(group))
			}
			moved, err := s.autoTransition(group, v, r.State, to, reason)
			if err != nil {
				s.log.Error("rollout: automatic transition", "group", group, "version", v, "to", to, "err", err)
				break
			}
			if !moved {
				break
			}
			detail := fmt.Sprintf("release %s %s → %s by %s: %s", v, r.State, to, rollout.HubActor, reason)
			if err := s.st.AppendEvents(who, []store.Event{{Time: time.Now().UTC(), Kind: "release", Detail: detail}}); err != nil {
				s.log.Warn("rollout: device event", "device", who, "err", err)
			}
		}
	}
}

// reporter names the device a transition is attributed to: key when it
// reports version, else the first (by key) that does.
func (s *Server) reporter(group, version, key string) string {
	t := &s.rel.track
	if st := t.devs[key]; st.group == group && st.reporting && st.release == version {
		return key
	}
	var keys []string
	for k, st := range t.devs {
		if st.group == group && st.reporting && st.release == version {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	if len(keys) == 0 {
		return key
	}
	return keys[0]
}

// notCounted describes the group's STALE devices that did not hold back
// completion (at most five named).
func (s *Server) notCounted(group string) string {
	var keys []string
	for k, st := range s.rel.track.devs {
		if st.group == group && st.state == store.Stale && !st.counted {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return ""
	}
	sort.Strings(keys)
	n, more := len(keys), ""
	if n > 5 {
		keys, more = keys[:5], ", …"
	}
	return fmt.Sprintf("; not counted: %d STALE (%s%s)", n, strings.Join(keys, ", "), more)
}

// autoTransition moves group/version from → to as the hub, persisting the
// record before it takes effect. It does nothing (false) when the release
// is no longer in state from: another worker, or an operator, moved it
// first. No re-judging follows: rollout.Judge treats approved,
// rolling-out and complete alike (and a worker must not wait for the
// group's workers).
func (s *Server) autoTransition(group, version string, from, to rollout.State, reason string) (bool, error) {
	s.relMu.Lock()
	defer s.relMu.Unlock()
	g, err := s.loadGroup(group)
	if err != nil {
		return false, err
	}
	if g == nil || g.recs[version] == nil {
		return false, fmt.Errorf("%w: %s/%s", ErrNoSuchRelease, group, version)
	}
	cur := g.recs[version]
	if cur.State != from {
		return false, nil
	}
	cp := *cur
	cp.History = append([]rollout.Transition(nil), cur.History...)
	if err := cp.Transition(to, time.Now().UTC(), rollout.HubActor, reason); err != nil {
		return false, err
	}
	if err := s.putRelease(&cp); err != nil {
		return false, err
	}
	s.log.Info("release transition", "group", group, "version", version, "state", to, "by", rollout.HubActor, "reason", reason)
	return true, nil
}
