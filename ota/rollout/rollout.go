package rollout

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// State is a release's lifecycle state.
type State string

// Release states, in lifecycle order.
const (
	Draft      State = "draft"
	Approved   State = "approved"
	RollingOut State = "rolling-out"
	Complete   State = "complete"
	Retired    State = "retired"
)

// Event ids for devices judged against the release lifecycle, beside
// failure.OTAUnknownRelease and failure.OTARolloutWindow.
const (
	EventNotApproved = "ota.release.not_approved"
	EventRetired     = "ota.release.retired"
)

// Signature records a policy signature the hub has verified (Sigstore
// bundle checked against the group's allowed identities). rollout does
// not verify it: it only insists that one exists and covers the policy
// digest being approved.
type Signature struct {
	// PolicyDigest is the sha256 (hex) of the policy bytes the signature covers.
	PolicyDigest string `json:"policy_digest"`
	// Identity is the verified signer identity (certificate SAN).
	Identity   string    `json:"identity"`
	VerifiedAt time.Time `json:"verified_at"`
}

// Transition is one recorded state change.
type Transition struct {
	From   State     `json:"from"`
	To     State     `json:"to"`
	At     time.Time `json:"at"`
	By     string    `json:"by"`
	Reason string    `json:"reason,omitempty"`
}

// Release binds a release of a group to the policy that judges devices
// running it.
type Release struct {
	Group        string `json:"group"`
	Version      string `json:"version"`
	ImageDigest  string `json:"image_digest"`  // sha256 hex of the OTA artifact
	PolicyDigest string `json:"policy_digest"` // sha256 hex of the runtime policy JSON
	State        State  `json:"state"`
	// Signature is set by the hub after it verified the policy signature.
	Signature *Signature   `json:"signature,omitempty"`
	History   []Transition `json:"history,omitempty"`
}

// ErrTransition is wrapped by every refused transition.
var ErrTransition = errors.New("rollout: transition refused")

// next lists the allowed transitions. Retired is terminal: a retired
// release's digests must not come back without a new approval record.
var next = map[State][]State{
	Draft:      {Approved, Retired},
	Approved:   {RollingOut, Retired},
	RollingOut: {Complete, Retired},
	Complete:   {Retired},
}

// NewRelease returns a draft release after checking its fields.
func NewRelease(group, version, imageDigest, policyDigest string) (*Release, error) {
	r := &Release{Group: group, Version: version, ImageDigest: strings.ToLower(imageDigest), PolicyDigest: strings.ToLower(policyDigest), State: Draft}
	if err := r.check(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Release) check() error {
	switch {
	case r.Group == "" || r.Version == "":
		return fmt.Errorf("rollout: release needs a group and a version")
	case strings.ContainsAny(r.Group+r.Version, "/\x00\n") || strings.TrimSpace(r.Version) != r.Version:
		// Both appear in the gate URL /v1/groups/{g}/releases/{v}.
		return fmt.Errorf("rollout: group %q or version %q has a character a URL path segment cannot carry", r.Group, r.Version)
	case !isSHA256(r.PolicyDigest):
		return fmt.Errorf("rollout: release %s/%s: policy digest %q is not sha256 hex", r.Group, r.Version, r.PolicyDigest)
	case r.ImageDigest != "" && !isSHA256(r.ImageDigest):
		return fmt.Errorf("rollout: release %s/%s: image digest %q is not sha256 hex", r.Group, r.Version, r.ImageDigest)
	}
	return nil
}

// Transition moves r to state to, recording who and why. Approval needs a
// verified signature over exactly r's policy digest and an image digest:
// a device can only ever be updated into a release whose policy someone
// accountable signed.
func (r *Release) Transition(to State, at time.Time, by, reason string) error {
	if !slices.Contains(next[r.State], to) {
		return fmt.Errorf("%w: %s/%s is %s, cannot become %s", ErrTransition, r.Group, r.Version, r.State, to)
	}
	if err := r.check(); err != nil {
		return fmt.Errorf("%w: %v", ErrTransition, err)
	}
	if by == "" {
		return fmt.Errorf("%w: every transition names who made it", ErrTransition)
	}
	if to == Approved {
		switch {
		case r.Signature == nil:
			return fmt.Errorf("%w: %s/%s has no verified policy signature", ErrTransition, r.Group, r.Version)
		case !strings.EqualFold(r.Signature.PolicyDigest, r.PolicyDigest):
			return fmt.Errorf("%w: %s/%s: the signature covers policy %s, not %s", ErrTransition, r.Group, r.Version, r.Signature.PolicyDigest, r.PolicyDigest)
		case r.ImageDigest == "":
			return fmt.Errorf("%w: %s/%s has no image digest to approve", ErrTransition, r.Group, r.Version)
		}
	}
	r.History = append(r.History, Transition{From: r.State, To: to, At: at, By: by, Reason: reason})
	r.State = to
	return nil
}

// Gate answers the OTA server's question for GET /v1/groups/{g}/releases/{v}:
// may this release be rolled out? Only approved, rolling-out and complete
// releases may; a draft or retired one, or an unknown one (r == nil), may not.
func Gate(r *Release) (ok bool, reason string) {
	switch {
	case r == nil:
		return false, "unknown release"
	case r.State == Approved || r.State == RollingOut || r.State == Complete:
		return true, "attestation-approved: policy " + r.PolicyDigest
	case r.State == Retired:
		return false, "release retired"
	}
	return false, "release not approved (state " + string(r.State) + ")"
}

func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
