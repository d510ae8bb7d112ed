package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/ratatouille/rat/evidence/failure"
	"github.com/ratatouille/rat/evidence/protocol"
	"github.com/ratatouille/rat/evidence/runtimepolicy"
	"github.com/ratatouille/rat/hub/store"
	"github.com/ratatouille/rat/hub/verifier"
	"github.com/ratatouille/rat/ota/rollout"
)

// ReleaseRecord is a stored release: the ota/rollout record plus the
// exact policy bytes and Sigstore bundle its approval was checked on.
type ReleaseRecord struct {
	rollout.Release
	Policy    []byte    `json:"policy"`
	Bundle    []byte    `json:"bundle,omitempty"`
	Issuer    string    `json:"issuer,omitempty"`
	LogIndex  int64     `json:"log_index,omitempty"`
	Submitted time.Time `json:"submitted"`
}

// Release errors, for the HTTP status.
var (
	ErrReleaseExists  = errors.New("server: release already registered")
	ErrNoSuchRelease  = errors.New("server: no such release")
	ErrReleaseInvalid = errors.New("server: release refused")
)

// releases caches each group's releases and parsed policies. The store
// is the truth; every change goes through the server and drops the
// group's cache.
type releases struct {
	groups map[string]*groupReleases
	track  rolloutTally // autorollout.go
}

type groupReleases struct {
	// judging is true once any release of the group was approved: from
	// then on the group is judged by release. Registering drafts alone
	// changes nothing for the group's devices.
	judging  bool
	recs     map[string]*ReleaseRecord
	policies map[string]*runtimepolicy.Policy // by version
	unions   map[[2]string]cachedPolicy       // by (from, to)
	// advancing lists the approved and rolling-out versions, which the
	// hub may move by itself (autorollout.go).
	advancing []string
}

func releaseKey(group, version string) string { return "release/" + group + "/" + version }
func releaseIndex(group string) string        { return "releases/" + group }

// loadGroup reads a group's releases (nil when it has none). Callers hold
// s.relMu.
func (s *Server) loadGroup(group string) (*groupReleases, error) {
	if protocol.ValidID(group) != nil {
		// Not a group name (a decoded %2F, say): it has no releases, and
		// must never name another group's keys.
		return nil, nil
	}
	if s.rel.groups == nil {
		s.rel.groups = map[string]*groupReleases{}
	}
	if g, ok := s.rel.groups[group]; ok {
		return g, nil
	}
	var versions []string
	b, err := s.st.GetKV(releaseIndex(group))
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, err
	default:
		if err := json.Unmarshal(b, &versions); err != nil {
			return nil, fmt.Errorf("server: release index of %s: %w", group, err)
		}
	}
	if len(versions) == 0 {
		s.rel.groups[group] = nil
		return nil, nil
	}
	g := &groupReleases{recs: map[string]*ReleaseRecord{}, policies: map[string]*runtimepolicy.Policy{}, unions: map[[2]string]cachedPolicy{}}
	for _, v := range versions {
		b, err := s.st.GetKV(releaseKey(group, v))
		if err != nil {
			return nil, fmt.Errorf("server: release %s/%s: %w", group, v, err)
		}
		r := new(ReleaseRecord)
		if err := json.Unmarshal(b, r); err != nil {
			return nil, fmt.Errorf("server: release %s/%s: %w", group, v, err)
		}
		if verifier.PolicyDigest(r.Policy) != r.PolicyDigest {
			return nil, fmt.Errorf("server: release %s/%s: stored policy does not match its digest", group, v)
		}
		p, err := runtimepolicy.Parse(r.Policy)
		if err != nil {
			return nil, fmt.Errorf("server: release %s/%s: %w", group, v, err)
		}
		g.recs[v], g.policies[v] = r, p
		g.judging = g.judging || r.State != rollout.Draft
		if r.State == rollout.Approved || r.State == rollout.RollingOut {
			g.advancing = append(g.advancing, v)
		}
	}
	s.rel.groups[group] = g
	return g, nil
}

// putRelease stores r (and the group's index) and drops the cache.
// Callers hold s.relMu.
func (s *Server) putRelease(r *ReleaseRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := s.st.PutKV(releaseKey(r.Group, r.Version), b); err != nil {
		return fmt.Errorf("server: store release %s/%s: %w", r.Group, r.Version, err)
	}
	var versions []string
	if b, err := s.st.GetKV(releaseIndex(r.Group)); err == nil {
		_ = json.Unmarshal(b, &versions)
	}
	if !slices.Contains(versions, r.Version) {
		versions = append(versions, r.Version)
		b, _ := json.Marshal(versions)
		if err := s.st.PutKV(releaseIndex(r.Group), b); err != nil {
			return fmt.Errorf("server: store release index %s: %w", r.Group, err)
		}
	}
	delete(s.rel.groups, r.Group)
	return nil
}

// keepPolicy stores a policy document a release judges by with the
// group's policies (unless it is there already), so that exported bundles
// carry every policy that judged a record.
func (s *Server) keepPolicy(group, source string, doc []byte) error {
	dg := verifier.PolicyDigest(doc)
	ps, err := s.st.Policies(group)
	if err != nil {
		return err
	}
	for _, p := range ps {
		if p.Digest == dg && p.Status != "rejected" {
			return nil
		}
	}
	return s.st.PutPolicy(&store.Policy{Group: group, Name: source, Digest: dg, JSON: doc, Source: source, Status: "release", Activated: time.Now().UTC()})
}

// AddRelease registers a draft release of group: its version, the sha256
// of its OTA artifact, and its runtime policy with the Sigstore bundle
// the approval will be checked on. Nothing judges by a draft.
func (s *Server) AddRelease(group, version, imageDigest string, doc, bundle []byte, by string) (*ReleaseRecord, error) {
	if err := protocol.ValidID(group); err != nil {
		return nil, fmt.Errorf("%w: group: %v", ErrReleaseInvalid, err)
	}
	if _, err := runtimepolicy.Parse(doc); err != nil {
		return nil, fmt.Errorf("%w: policy of %s/%s: %v", ErrReleaseInvalid, group, version, err)
	}
	rel, err := rollout.NewRelease(group, version, imageDigest, verifier.PolicyDigest(doc))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrReleaseInvalid, err)
	}
	if by == "" {
		return nil, fmt.Errorf("%w: a release names who registered it", ErrReleaseInvalid)
	}
	s.relMu.Lock()
	defer s.relMu.Unlock()
	g, err := s.loadGroup(group)
	if err != nil {
		return nil, err
	}
	if g != nil && g.recs[version] != nil {
		return nil, fmt.Errorf("%w: %s/%s", ErrReleaseExists, group, version)
	}
	now := time.Now().UTC()
	rel.History = []rollout.Transition{{To: rollout.Draft, At: now, By: by, Reason: "registered"}}
	r := &ReleaseRecord{Release: *rel, Policy: doc, Bundle: bundle, Submitted: now}
	if err := s.putRelease(r); err != nil {
		return nil, err
	}
	s.log.Info("release registered", "group", group, "version", version, "policy", r.PolicyDigest)
	return r, nil
}

// ApproveRelease approves a draft release after the group's policy
// signature check (Config.PolicyCheck, the same rules as a group policy)
// verified its bundle over exactly the release's policy bytes. Without a
// configured check no release can be approved: an approval is the
// statement that someone accountable signed the policy.
func (s *Server) ApproveRelease(group, version, by, reason string) (*ReleaseRecord, error) {
	r, err := s.ReleaseOf(group, version)
	if err != nil {
		return nil, err
	}
	if s.cfg.PolicyCheck == nil {
		return nil, fmt.Errorf("%w: %s/%s: no policy signature check is configured (--signers)", ErrUnsigned, group, version)
	}
	meta, err := s.cfg.PolicyCheck(group, r.Policy, r.Bundle)
	if err != nil {
		return nil, fmt.Errorf("%w: %s/%s: %v", ErrUnsigned, group, version, err)
	}
	return s.changeRelease(group, version, rollout.Approved, by, reason, func(r *ReleaseRecord) error {
		r.Signature = &rollout.Signature{PolicyDigest: verifier.PolicyDigest(r.Policy), Identity: meta.Signer, VerifiedAt: time.Now().UTC()}
		r.Issuer, r.LogIndex = meta.Issuer, meta.LogIndex
		return s.keepPolicy(group, "release:"+version, r.Policy)
	})
}

// SetReleaseState moves a release to rolling-out, complete or retired
// (approval has its own method: it needs the signature check).
func (s *Server) SetReleaseState(group, version string, to rollout.State, by, reason string) (*ReleaseRecord, error) {
	if to == rollout.Approved {
		return s.ApproveRelease(group, version, by, reason)
	}
	return s.changeRelease(group, version, to, by, reason, nil)
}

func (s *Server) changeRelease(group, version string, to rollout.State, by, reason string, prepare func(*ReleaseRecord) error) (*ReleaseRecord, error) {
	s.relMu.Lock()
	g, err := s.loadGroup(group)
	if err == nil && (g == nil || g.recs[version] == nil) {
		err = fmt.Errorf("%w: %s/%s", ErrNoSuchRelease, group, version)
	}
	if err != nil {
		s.relMu.Unlock()
		return nil, err
	}
	cp := *g.recs[version]
	cp.History = slices.Clone(cp.History)
	r := &cp
	if prepare != nil {
		if err := prepare(r); err != nil {
			s.relMu.Unlock()
			return nil, err
		}
	}
	if err := r.Transition(to, time.Now().UTC(), by, reason); err != nil {
		s.relMu.Unlock()
		return nil, fmt.Errorf("%w: %v", ErrReleaseInvalid, err)
	}
	err = s.putRelease(r)
	s.relMu.Unlock()
	if err != nil {
		return nil, err
	}
	s.log.Info("release transition", "group", group, "version", version, "state", to, "by", by)
	// Devices on this release (or mid-update from it) may be judged
	// differently now: re-judge the group, recording why.
	s.rejudgeGroup(group, fmt.Sprintf("release %s %s by %s", version, to, by))
	return r, nil
}

// ReleaseOf returns one release of group.
func (s *Server) ReleaseOf(group, version string) (*ReleaseRecord, error) {
	s.relMu.Lock()
	defer s.relMu.Unlock()
	g, err := s.loadGroup(group)
	if err != nil {
		return nil, err
	}
	if g == nil || g.recs[version] == nil {
		return nil, fmt.Errorf("%w: %s/%s", ErrNoSuchRelease, group, version)
	}
	cp := *g.recs[version]
	return &cp, nil
}

// Releases lists a group's releases by version.
func (s *Server) Releases(group string) ([]ReleaseRecord, error) {
	s.relMu.Lock()
	defer s.relMu.Unlock()
	g, err := s.loadGroup(group)
	if err != nil || g == nil {
		return nil, err
	}
	out := make([]ReleaseRecord, 0, len(g.recs))
	for _, r := range g.recs {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// Gate answers GET /v1/groups/{g}/releases/{v} for an OTA server.
func (s *Server) Gate(group, version string) (rollout.GateAnswer, int, error) {
	r, err := s.ReleaseOf(group, version)
	if errors.Is(err, ErrNoSuchRelease) {
		a, code := rollout.Answer(group, version, nil)
		return a, code, nil
	}
	if err != nil {
		return rollout.GateAnswer{}, 500, err
	}
	a, code := rollout.Answer(group, version, &r.Release)
	return a, code, nil
}

// releaseVerdict is the verifier's ReleaseSource: rollout.Judge over the
// group's releases, with the union window from Config.ReleaseWindow.
func (s *Server) releaseVerdict(q verifier.ReleaseQuery, now time.Time) (verifier.ReleaseVerdict, bool) {
	s.relMu.Lock()
	defer s.relMu.Unlock()
	g, err := s.loadGroup(q.Group)
	if err != nil {
		// Fail closed: a group whose releases cannot be read judges nobody.
		s.log.Error("releases", "group", q.Group, "err", err)
		e := failure.Event{ID: failure.RuntimePolicyMissing, Severity: failure.Critical, Context: "group " + q.Group + ": releases unreadable: " + err.Error()}
		return verifier.ReleaseVerdict{Event: &e, Reason: e.Context}, true
	}
	if g == nil || !g.judging {
		return verifier.ReleaseVerdict{}, false
	}
	rels := make(map[string]*rollout.Release, len(g.recs))
	for v, r := range g.recs {
		rels[v] = &r.Release
	}
	d := rollout.Judge(rels, rollout.Device{Release: q.Release, Previous: q.From, BootChanged: q.NewBoot, SwitchedAt: q.SwitchedAt}, now, s.cfg.ReleaseWindow)
	out := verifier.ReleaseVerdict{Event: d.Event, Reason: d.Reason}
	switch len(d.Policies) {
	case 0:
		if out.Event == nil {
			e := failure.Event{ID: failure.OTAUnknownRelease, Severity: failure.Critical, Context: d.Reason}
			out.Event = &e
		}
	case 1:
		v := d.Policies[0]
		out.Policy, out.Digest = g.policies[v], g.recs[v].PolicyDigest
	default:
		k := [2]string{d.Policies[0], d.Policies[1]}
		c, ok := g.unions[k]
		if !ok {
			u, err := rollout.Union(g.policies[k[0]], g.policies[k[1]])
			var doc []byte
			if err == nil {
				doc, err = u.Marshal()
			}
			if err == nil {
				// The union judged records too: keep it for exports.
				err = s.keepPolicy(q.Group, "union:"+k[0]+"+"+k[1], doc)
			}
			if err != nil {
				// Policies that cannot be merged: the new release alone
				// judges (what N left in the log then shows as failures).
				out.Policy, out.Digest = g.policies[k[1]], g.recs[k[1]].PolicyDigest
				out.Reason = fmt.Sprintf("%s; the union cannot be built (%v): judged by %s alone", d.Reason, err, k[1])
				return out, true
			}
			c = cachedPolicy{p: u, digest: verifier.PolicyDigest(doc)}
			g.unions[k] = c
		}
		out.Policy, out.Digest, out.Union = c.p, c.digest, true
	}
	return out, true
}

// releaseFor judges a stored device by its group's releases outside an
// attestation (re-judging after a release or policy change, an
// operator's clear): the device's last reported release and switch.
func (s *Server) releaseFor(d *store.Device) (verifier.ReleaseVerdict, bool) {
	return s.releaseVerdict(verifier.ReleaseQuery{Group: d.Group, Release: d.Release, From: d.ReleaseFrom, SwitchedAt: d.ReleaseSwitched}, time.Now().UTC())
}

// hasReleases reports whether group judges its devices by release (it
// has a release that was approved at some point).
func (s *Server) hasReleases(group string) bool {
	s.relMu.Lock()
	defer s.relMu.Unlock()
	g, err := s.loadGroup(group)
	return err != nil || (g != nil && g.judging)
}

// rejudgeGroup re-judges every device of group on its worker and waits.
func (s *Server) rejudgeGroup(group, why string) {
	devs, err := s.st.Devices()
	if err != nil {
		s.log.Error("re-judge group", "group", group, "err", err)
		return
	}
	done := make(chan struct{}, len(devs))
	n := 0
	for _, d := range devs {
		if d.Group != group || d.State == store.Decommissioned || d.State == store.Enrolling {
			continue
		}
		n++
		key := d.Key
		s.enqueueFunc(d.ID, func() {
			defer func() { done <- struct{}{} }()
			s.rejudge(key, nil, "", why)
		})
	}
	for ; n > 0; n-- {
		<-done
	}
}

// untrustedByRelease records that d runs a release no policy may judge.
func (s *Server) untrustedByRelease(d *store.Device, e failure.Event, why string) {
	now := time.Now().UTC()
	prev := d.State
	evs := []store.Event{{Time: now, Kind: "policy", Detail: why + ": " + e.Context}}
	if d.State != store.Untrusted {
		d.State, d.Reason = store.Untrusted, e.String()
		d.Failures = append(d.Failures, e)
		evs = []store.Event{{Time: now, Kind: "failure", Event: &e, Detail: why},
			{Time: now, Kind: "state", State: d.State, Detail: prev + " → UNTRUSTED: " + d.Reason}}
	}
	if err := s.save(d, evs, 0, nil); err != nil {
		s.log.Error("re-judge: store", "device", d.Key, "err", err)
		return
	}
	if prev != d.State {
		s.fireUntrusted(d)
	}
}
