package rollout

// GateAnswer is the JSON body of GET /v1/groups/{g}/releases/{v}, the
// question an OTA server (hawkBit, Mender, RAUC tooling) asks before it
// rolls a release out. The hub answers 200 with Approved true, or 403
// with Approved false for a known but unapproved release and 404 for an
// unknown one, always with this body, so a server that only reads the
// status code and one that reads the body decide the same way.
type GateAnswer struct {
	Group        string `json:"group"`
	Version      string `json:"version"`
	Approved     bool   `json:"approved"`
	State        State  `json:"state,omitempty"`
	ImageDigest  string `json:"image_digest,omitempty"`
	PolicyDigest string `json:"policy_digest,omitempty"`
	Reason       string `json:"reason"`
}

// Answer builds the gate answer and its HTTP status for release r of
// group/version (r nil when the hub has no such release).
func Answer(group, version string, r *Release) (GateAnswer, int) {
	ok, reason := Gate(r)
	a := GateAnswer{Group: group, Version: version, Approved: ok, Reason: reason}
	if r == nil {
		return a, 404
	}
	a.State, a.ImageDigest, a.PolicyDigest = r.State, r.ImageDigest, r.PolicyDigest
	if !ok {
		return a, 403
	}
	return a, 200
}
