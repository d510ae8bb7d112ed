package release_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ratatouille/rat/evidence/failure"
	"github.com/ratatouille/rat/examples/secret-release/demo"
	"github.com/ratatouille/rat/examples/secret-release/release"
	"github.com/ratatouille/rat/hub/ear"
)

// TestAcceptUnverifiedPlatformUnsafe: with the demo-only option, a TRUSTED
// device whose only shortfall is TOFU hardware and unknown Secure Boot gets
// the secret; every other non-affirming result is still refused, and
// without the option so is that one. Tokens come from the real issuer.
func TestAcceptUnverifiedPlatformUnsafe(t *testing.T) {
	env, err := demo.Start(demo.Config{KeyDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	dev, err := env.Device("dev-1")
	if err != nil {
		t.Fatal(err)
	}
	platform := func() ear.Appraisal { // what `make demo`'s simulated device gets
		a := demo.Trusted("dev-1")
		a.EKCertVerified, a.TOFU, a.SecureBoot = false, true, nil
		return a
	}
	off := false
	cases := []struct {
		name   string
		accept bool
		edit   func(*ear.Appraisal)
		revoke bool
		refuse error // nil: released
	}{
		{"fully verified", true, func(a *ear.Appraisal) { *a = demo.Trusted("dev-1") }, false, nil},
		{"TOFU, no event log", true, func(*ear.Appraisal) {}, false, nil},
		{"TOFU, no event log, option off", false, func(*ear.Appraisal) {}, false, release.ErrNotAffirm},
		{"secure boot off", true, func(a *ear.Appraisal) { a.SecureBoot = &off }, false, release.ErrNotAffirm},
		{"last quote too old", true, func(a *ear.Appraisal) { a.LastVerified = time.Now().Add(-time.Hour) }, false, release.ErrNotAffirm},
		{"hub state STALE", true, func(a *ear.Appraisal) { a.Trusted, a.State = false, "STALE" }, false, release.ErrNotAffirm},
		{"no policy", true, func(a *ear.Appraisal) { a.PolicyDigest = "" }, false, release.ErrNotAffirm},
		{"AK not bound", true, func(a *ear.Appraisal) { a.AKBound = false }, false, release.ErrNotAffirm},
		{"file not in policy", true, func(a *ear.Appraisal) {
			a.Trusted, a.State, a.IMAVerdict = false, "UNTRUSTED", ear.IMAUnrecognized
			a.Failures = []string{failure.IMANotInAllowlist}
		}, false, release.ErrNotAffirm},
		{"unrecognized file while TRUSTED", true, func(a *ear.Appraisal) { a.IMAVerdict = ear.IMAUnrecognized }, false, release.ErrNotAffirm},
		{"revoked", true, func(*ear.Appraisal) {}, true, release.ErrNotAffirm},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env.Verifier.AcceptUnverifiedPlatformUnsafe = tc.accept
			a := platform()
			tc.edit(&a)
			env.Source.Set(a)
			if tc.revoke {
				if err := env.Issuer.Revoke("dev-1"); err != nil {
					t.Fatal(err)
				}
				defer env.Issuer.Reinstate("dev-1")
			}
			tok, secret, refused, err := dev.Attempt(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.refuse == nil && secret == "":
				t.Fatalf("refused (%s): %s %q", refused, tok.Status, tok.Reasons)
			case tc.refuse != nil && secret != "":
				t.Fatalf("released for status %s %q", tok.Status, tok.Reasons)
			case tc.refuse != nil && !strings.HasPrefix(refused, tc.refuse.Error()):
				t.Fatalf("refused with %q, want %v", refused, tc.refuse)
			}
		})
	}
}
