package demo

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ratatouille/rat/evidence/failure"
	"github.com/ratatouille/rat/hub/ear"
)

// Run narrates "only machines that pass attestation get secrets": a TRUSTED
// device gets the secret; then it runs an unapproved binary, the hub's
// appraisal turns UNTRUSTED and the hub revokes its tokens, and from the
// very next request on it gets nothing. It returns an error when any step
// does not behave as narrated.
func Run(w io.Writer, dir string) error {
	ctx := context.Background()
	env, err := Start(Config{KeyDir: dir})
	if err != nil {
		return err
	}
	defer env.Close()
	say := func(f string, a ...any) { fmt.Fprintf(w, f+"\n", a...) }
	say("hub JWKS:        %s/.well-known/jwks.json", env.HubURL)
	say("secret service:  %s (mTLS, audience %q)", env.ServiceURL, Audience)

	env.Source.Set(Trusted("edge-01"))
	dev, err := env.Device("edge-01")
	if err != nil {
		return err
	}
	say("\n-- edge-01 is TRUSTED: nonce from the service, EAR token from the hub, present it")
	tok, secret, refused, err := dev.Attempt(ctx)
	if err != nil {
		return err
	}
	say("token %s: ear.status=%s, expires %s", tok.ID, tok.Status, tok.ExpiresAt.Format(time.RFC3339))
	if secret == "" {
		return fmt.Errorf("demo: trusted device refused: %s", refused)
	}
	say("secret released: %q", secret)

	say("\n-- the same token again (its nonce is used up)")
	if _, refused, err = dev.Secret(ctx, tok.JWT); err != nil || refused == "" {
		return fmt.Errorf("demo: replayed token accepted (%v)", err)
	}
	say("refused: %s", refused)

	say("\n-- edge-01 gets a fresh token, then runs /tmp/evil: the hub judges it UNTRUSTED and revokes")
	n, err := dev.Nonce(ctx)
	if err != nil {
		return err
	}
	live, err := dev.Token(ctx, n, Audience)
	if err != nil {
		return err
	}
	bad := Trusted("edge-01")
	bad.Trusted, bad.State = false, "UNTRUSTED"
	bad.IMAVerdict = ear.IMAUnrecognized
	bad.Failures = []string{failure.IMANotInAllowlist}
	env.Source.Set(bad)
	if err := env.Issuer.RevokeWithReason("edge-01", failure.IMANotInAllowlist+": /tmp/evil"); err != nil {
		return err
	}
	if _, refused, err = dev.Secret(ctx, live.JWT); err != nil || refused == "" {
		return fmt.Errorf("demo: revoked token accepted (%v)", err)
	}
	say("token issued before the revocation: refused: %s", refused)
	tok, _, refused, err = dev.Attempt(ctx)
	if err != nil {
		return err
	}
	if refused == "" {
		return fmt.Errorf("demo: untrusted device got the secret")
	}
	say("new token: ear.status=%s (%s)", tok.Status, strings.Join(tok.Reasons, "; "))
	say("refused: %s", refused)
	say("\nservice log:\n%s", env.Logs.String())
	return nil
}
