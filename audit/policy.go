package audit

import (
	"errors"
	"fmt"

	"github.com/ratatouille/rat/audit/policysig"
	"github.com/ratatouille/rat/evidence/bundle"
	"github.com/ratatouille/rat/evidence/failure"
)

type policyResult struct {
	result Result
	id     string // failure id when result is Fail
	signer string
	detail string
}

// checkPolicySignature is the one step that decides whether a policy
// element was signed by a signer the auditor allows. It uses only the
// auditor's trust (trusted root, identities, keys), never the root or keys
// the bundle carries: those come from the party being audited.
func checkPolicySignature(o *options, p *bundle.Policy) policyResult {
	if len(o.identities) == 0 && len(o.policyKeys) == 0 {
		return policyResult{result: NotChecked, detail: "no signer given (--identity/--issuer or --key)"}
	}
	if len(p.SigstoreBundle) == 0 {
		return policyResult{result: Fail, id: failure.PolicySignature, detail: "no Sigstore bundle: the policy is unsigned"}
	}
	var opts []policysig.Option
	for _, id := range o.identities {
		opts = append(opts, policysig.WithIdentity(id))
	}
	for _, k := range o.policyKeys {
		opts = append(opts, policysig.WithPublicKeyPEM(k))
	}
	if o.withoutTlog {
		opts = append(opts, policysig.WithoutTlogUnsafe())
	}
	tm := o.trustedMaterial
	switch {
	case tm != nil:
	case len(o.trustedRoot) > 0:
		r, err := policysig.ParseTrustedRoot(o.trustedRoot)
		if err != nil {
			return policyResult{result: NotChecked, detail: fmt.Sprintf("trusted root does not parse: %v", err)}
		}
		tm = r
	case len(o.identities) > 0 || !o.withoutTlog:
		return policyResult{result: NotChecked, detail: "no Sigstore trusted root given (--trusted-root)"}
	}
	v, err := policysig.New(tm, opts...)
	if err != nil {
		return policyResult{result: NotChecked, detail: fmt.Sprintf("signer configuration refused: %v", err)}
	}
	res, err := v.Verify(p.Document, p.SigstoreBundle)
	if err != nil {
		id := failure.PolicySignature
		if errors.Is(err, policysig.ErrUntrustedSigner) {
			id = failure.PolicyIdentity
		}
		return policyResult{result: Fail, id: id, detail: err.Error()}
	}
	d := res.Signer()
	if idx, ok := res.LogIndex(); ok {
		d += fmt.Sprintf(" (transparency log index %d)", idx)
	}
	return policyResult{result: Pass, signer: res.Signer(), detail: d}
}
