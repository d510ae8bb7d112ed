package storesource

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ratatouille/rat/evidence/failure"
	"github.com/ratatouille/rat/evidence/protocol"
	"github.com/ratatouille/rat/hub/ear"
	"github.com/ratatouille/rat/hub/store"
)

// Source answers ear.Source from the hub store for one fleet. Device ids
// are the bare ids the devices use for themselves (their MQTT username and
// certificate CommonName), never "<fleet>/<id>": a token's sub must be the
// name a relying party can compare with the caller's own identity, and one
// device must have exactly one name under which its tokens are revoked.
type Source struct {
	Store store.Store
	Fleet string
	// Issuer, when set, is reinstated for a revoked device the store says
	// is TRUSTED again (see Appraise).
	Issuer *ear.Issuer
	// Logf receives reinstatements (optional).
	Logf func(format string, args ...any)
}

// Key is the store key of deviceID in s's fleet.
func (s *Source) Key(deviceID string) string { return s.Fleet + "/" + deviceID }

// DeviceID is the bare device id of a store key of s's fleet, or false for
// a key of another fleet.
func (s *Source) DeviceID(key string) (string, bool) {
	id, ok := strings.CutPrefix(key, s.Fleet+"/")
	if !ok || protocol.ValidID(id) != nil {
		return "", false
	}
	return id, true
}

// Appraise implements ear.Source.
//
// Reinstate rule: the issuer revokes a device when the hub turns it
// UNTRUSTED (hub/server's OnUntrusted). The only ways back to TRUSTED are
// hub re-judgements — an operator's clear, or a new runtime policy under
// which the stored log passes — and they run on the device's own worker
// after the revocation. So a revoked device whose stored state is TRUSTED
// has been re-judged TRUSTED by the hub after it was revoked, and the
// issuer may give it affirming tokens again. STALE, ENROLLING and every
// other state keep the revocation. Tokens revoked earlier stay revoked.
func (s *Source) Appraise(_ context.Context, deviceID string) (ear.Appraisal, error) {
	if err := protocol.ValidID(deviceID); err != nil {
		return ear.Appraisal{}, fmt.Errorf("device %q (use the bare device id, not fleet/id): %w", deviceID, ear.ErrUnknownDevice)
	}
	d, err := s.Store.Device(s.Key(deviceID))
	if errors.Is(err, store.ErrNotFound) {
		return ear.Appraisal{}, fmt.Errorf("device %s: %w", deviceID, ear.ErrUnknownDevice)
	}
	if err != nil {
		return ear.Appraisal{}, fmt.Errorf("reading device %s: %w", deviceID, err)
	}
	if d.State == store.Trusted && s.Issuer != nil && s.Issuer.Revoked(deviceID) {
		if err := s.Issuer.Reinstate(deviceID); err != nil {
			// Still revoked: the token will be contraindicated, which is
			// the safe side of this failure.
			s.logf("ear: reinstating %s failed: %v", deviceID, err)
		} else {
			s.logf("ear: %s is TRUSTED again; reinstated for affirming tokens (earlier tokens stay revoked)", deviceID)
		}
	}
	a := FromDevice(d)
	a.DeviceID = deviceID
	return a, nil
}

func (s *Source) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

// FromDevice maps the hub's record of a device to an Appraisal (DeviceID is
// the record's bare id; Failures are its critical failure ids, the ones
// that made a verdict). Each field says only what the hub verified:
//
//   - AKBound: the device finished enrollment, which includes credential
//     activation (the hub never leaves ENROLLING otherwise), and has an AK.
//   - EKCertVerified: the EK certificate chained to a configured root; a
//     TOFU enrollment never counts, whatever else the record says.
//   - SecureBoot: only when the firmware event log of the current boot
//     replayed to the quoted PCRs; otherwise unknown.
//   - IMAVerdict: see IMAVerdict.
func FromDevice(d *store.Device) ear.Appraisal {
	a := ear.Appraisal{
		DeviceID:       d.ID,
		Group:          d.Group,
		Trusted:        d.State == store.Trusted,
		State:          d.State,
		EKCertVerified: d.EKVerified && !d.TOFU,
		AKBound:        len(d.AKPublic) > 0 && d.State != store.Enrolling && d.State != "",
		TOFU:           d.TOFU,
		IMAVerdict:     IMAVerdict(d),
		PolicyDigest:   d.PolicyDigest,
		Release:        d.Release,
		LastVerified:   d.LastVerified,
	}
	if d.EventLogVerified && d.SecureBoot != nil {
		sb := *d.SecureBoot
		a.SecureBoot = &sb
	}
	for _, f := range d.Failures {
		if f.Severity == failure.Critical {
			a.Failures = append(a.Failures, f.ID)
		}
	}
	return a
}

// contraindicatedIMA are the IMA failures that show an executable was
// tampered with (a known path with a wrong digest, a bad signature), as
// opposed to merely unknown to the policy.
var contraindicatedIMA = map[string]bool{
	failure.IMAInvalidHash: true,
	failure.IMASigInvalid:  true,
}

// IMAVerdict is the executables verdict of d's IMA log against its group's
// runtime policy: contraindicated for a tampered file, unrecognized for a
// file the policy does not list (or any other critical IMA failure;
// warnings decide no verdict in the hub and none here), approved
// only when the hub judged the log against a known policy with no failure
// and the device is TRUSTED (or STALE: approved at its last verification;
// STALE itself keeps the status from being affirming), and none when the
// hub has not judged it.
func IMAVerdict(d *store.Device) string {
	verdict, critical := "", false
	for _, f := range d.Failures {
		if f.Severity != failure.Critical {
			continue
		}
		critical = true
		switch {
		case contraindicatedIMA[f.ID]:
			return ear.IMAContraindicated
		case strings.HasPrefix(f.ID, "ima."):
			verdict = ear.IMAUnrecognized
		}
	}
	if verdict != "" {
		return verdict
	}
	if d.PolicyDigest != "" && !critical && (d.State == store.Trusted || d.State == store.Stale) {
		return ear.IMAApproved
	}
	return ear.IMANone
}
