package ear

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ratatouille/rat/evidence/failure"
	vear "github.com/veraison/ear"
)

// Appraisal is the hub's current judgement of one device, supplied by the hub.
type Appraisal struct {
	DeviceID, Group string
	Trusted         bool      // hub's overall verdict is TRUSTED right now
	State           string    // "TRUSTED","UNTRUSTED","STALE","ENROLLING",...
	EKCertVerified  bool      // hardware: EK chain to a configured root
	AKBound         bool      // instance identity: credential activation done
	TOFU            bool      // EK without certificate approved on first use
	IMAVerdict      string    // "approved","unrecognized","contraindicated","none"
	SecureBoot      *bool     // PCR7/event-log derived, nil = unknown
	PolicyDigest    string    // digest of the runtime policy the device was judged against
	Release         string    // OTA release the policy belongs to
	LastVerified    time.Time // time of the last verified quote
	Failures        []string  // failure event ids, if any
}

// Source gives the hub's current Appraisal of a device. Issue asks it on
// every request, so a device that turned UNTRUSTED gets no affirming token
// even before anyone called Revoke.
type Source interface {
	Appraise(ctx context.Context, deviceID string) (Appraisal, error)
}

// ErrUnknownDevice is what a Source returns (wrapped) for a device it does
// not know; the HTTP handler maps it to 404.
var ErrUnknownDevice = errors.New("unknown device")

// IMA verdicts the hub reports in Appraisal.IMAVerdict.
const (
	IMAApproved        = "approved"
	IMAUnrecognized    = "unrecognized"
	IMAContraindicated = "contraindicated"
	IMANone            = "none"
)

// StateTrusted is the hub state that, with Trusted, allows an affirming result.
const StateTrusted = "TRUSTED"

// Judgement is the trust vector and overall status derived from an
// Appraisal, with the reasons the status is not affirming.
type Judgement struct {
	Vector  vear.TrustVector
	Status  vear.TrustTier
	Reasons []string // empty exactly when Status is affirming
}

// failureClaims maps failure ids (evidence/failure) to the trust-vector
// claim they contradict. Ids not listed still count through Trusted/State;
// they just do not name a claim.
var failureClaims = map[string]struct {
	claim string
	value vear.TrustClaim
}{
	failure.QuoteInvalidSignature:  {"instance-identity", vear.CryptoValidationFailedClaim},
	failure.QuoteInvalidScheme:     {"instance-identity", vear.CryptoValidationFailedClaim},
	failure.CredentialActivation:   {"instance-identity", vear.UnrecognizedInstanceClaim},
	failure.EKCertInvalid:          {"hardware", vear.UnrecognizedHardwareClaim},
	failure.IMANotInAllowlist:      {"executables", vear.UnrecognizedRuntimeClaim},
	failure.IMASigNotInAllowlist:   {"executables", vear.UnrecognizedRuntimeClaim},
	failure.IMABufNotInAllowlist:   {"executables", vear.UnrecognizedRuntimeClaim},
	failure.IMAInvalidHash:         {"executables", vear.ContraindicatedRuntimeClaim},
	failure.IMASigInvalid:          {"executables", vear.ContraindicatedRuntimeClaim},
	failure.IMAPCRMismatch:         {"executables", vear.CryptoValidationFailedClaim},
	failure.IMABootAggregate:       {"executables", vear.CryptoValidationFailedClaim},
	failure.MeasuredBootInvalidLog: {"configuration", vear.CryptoValidationFailedClaim},
	failure.MeasuredBootPolicy:     {"configuration", vear.UnsupportableConfigClaim},
}

// Judge derives the AR4SI trust vector and the EAR status from a. Each claim
// says only what the hub verified: a property it did not check is
// "no claim" (0), never affirming. The status is affirming only when all
// four claims are affirming, the hub's verdict is TRUSTED, the last verified
// quote is no older than maxAge, a policy id is known and the device is not
// revoked; otherwise it is contraindicated when any claim is contraindicated
// or the hub says UNTRUSTED or the device is revoked, and warning else.
func Judge(a Appraisal, now time.Time, maxAge time.Duration, revoked bool) Judgement {
	var j Judgement
	tv := &j.Vector

	// instance-identity: the AK was proven to live in the TPM holding the
	// EK (credential activation). Without it the quotes are signed by a key
	// the hub cannot tie to this machine.
	if a.AKBound {
		tv.InstanceIdentity = vear.TrustworthyInstanceClaim
	}
	// hardware: only an EK certificate chaining to a configured root shows
	// the TPM is genuine. A TOFU-approved EK is an operator's decision, not
	// a hardware verification, so it makes no claim.
	if a.EKCertVerified {
		tv.Hardware = vear.GenuineHardwareClaim
	}
	// executables: the IMA log replayed against the runtime policy.
	switch a.IMAVerdict {
	case IMAApproved:
		tv.Executables = vear.ApprovedRuntimeClaim
	case IMAUnrecognized:
		tv.Executables = vear.UnrecognizedRuntimeClaim
	case IMAContraindicated:
		tv.Executables = vear.ContraindicatedRuntimeClaim
	}
	// configuration: Secure Boot state from PCR 7 / the event log.
	if a.SecureBoot != nil {
		if *a.SecureBoot {
			tv.Configuration = vear.ApprovedConfigClaim
		} else {
			tv.Configuration = vear.UnsafeConfigClaim
		}
	}
	// Named failures override what the flags say when they are worse.
	for _, id := range a.Failures {
		fc, ok := failureClaims[id]
		if !ok {
			continue
		}
		p := claimPtr(tv, fc.claim)
		if fc.value.GetTier() >= p.GetTier() {
			*p = fc.value
		}
	}

	contra := false
	for _, name := range claimNames {
		c := *claimPtr(tv, name)
		switch {
		case c.IsAffirming():
		case c.IsContraindicated():
			contra = true
			j.Reasons = append(j.Reasons, fmt.Sprintf("%s: %s (%d, contraindicated)", name, claimTag(name, c), c))
		case c.IsWarning():
			j.Reasons = append(j.Reasons, fmt.Sprintf("%s: %s (%d, warning)", name, claimTag(name, c), c))
		default:
			j.Reasons = append(j.Reasons, name+": not verified")
		}
	}
	if a.TOFU && !a.EKCertVerified {
		j.Reasons = append(j.Reasons, "hardware: EK approved on first use, no certificate chain")
	}
	if !a.Trusted || a.State != StateTrusted {
		j.Reasons = append(j.Reasons, fmt.Sprintf("hub state %q", a.State))
		if strings.EqualFold(a.State, "UNTRUSTED") {
			contra = true
		}
	}
	if a.LastVerified.IsZero() {
		j.Reasons = append(j.Reasons, "never verified")
	} else if age := now.Sub(a.LastVerified); age > maxAge {
		j.Reasons = append(j.Reasons, fmt.Sprintf("last verified quote is %s old (max %s)", age.Truncate(time.Second), maxAge))
	} else if age < -maxClockSkew {
		j.Reasons = append(j.Reasons, "last verified quote is in the future")
	}
	if a.PolicyDigest == "" {
		j.Reasons = append(j.Reasons, "no appraisal policy")
	}
	if revoked {
		contra = true
		j.Reasons = append(j.Reasons, "device revoked")
	}

	switch {
	case len(j.Reasons) == 0:
		j.Status = vear.TrustTierAffirming
	case contra:
		j.Status = vear.TrustTierContraindicated
	default:
		j.Status = vear.TrustTierWarning
	}
	return j
}

// maxClockSkew is how far in the future a LastVerified may be before it is
// treated as bogus (hub and verifier clocks are the same host, so small).
const maxClockSkew = 5 * time.Second

var claimNames = []string{"instance-identity", "hardware", "executables", "configuration"}

// claimTags are AR4SI's names for the values Judge produces, for reasons.
var claimTags = map[string]map[vear.TrustClaim]string{
	"instance-identity": {
		vear.UntrustworthyInstanceClaim: "untrustworthy_instance",
		vear.UnrecognizedInstanceClaim:  "unrecognized_instance",
	},
	"hardware": {
		vear.UnsafeHardwareClaim:          "unsafe_hw",
		vear.ContraindicatedHardwareClaim: "contraindicated_hw",
		vear.UnrecognizedHardwareClaim:    "unrecognized_hw",
	},
	"executables": {
		vear.UnsafeRuntimeClaim:          "unsafe_rt",
		vear.UnrecognizedRuntimeClaim:    "unrecognized_rt",
		vear.ContraindicatedRuntimeClaim: "contraindicated_rt",
	},
	"configuration": {
		vear.UnsafeConfigClaim:        "unsafe_config",
		vear.UnsupportableConfigClaim: "unsupportable_config",
	},
}

func claimTag(name string, c vear.TrustClaim) string {
	if c == vear.CryptoValidationFailedClaim {
		return "crypto_failed"
	}
	if t, ok := claimTags[name][c]; ok {
		return t
	}
	return "claim"
}

func claimPtr(tv *vear.TrustVector, name string) *vear.TrustClaim {
	switch name {
	case "instance-identity":
		return &tv.InstanceIdentity
	case "hardware":
		return &tv.Hardware
	case "executables":
		return &tv.Executables
	case "configuration":
		return &tv.Configuration
	}
	panic("ear: unknown claim " + name)
}

// PolicyID is the ear.appraisal-policy-id of an Appraisal: the runtime
// policy digest and the release it belongs to, so a relying party can bind
// to an exact policy ("sha256:…@2026.12.1").
func PolicyID(a Appraisal) string {
	switch {
	case a.PolicyDigest == "":
		return ""
	case a.Release == "":
		return a.PolicyDigest
	}
	return a.PolicyDigest + "@" + a.Release
}
