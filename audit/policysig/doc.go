// Package policysig decides whether a runtime policy file was signed by
// an allowed signer: it verifies the policy's Sigstore bundle (cosign
// sign-blob --new-bundle-format, or `rat policy sign`) with sigstore-go
// v1.3.0, fully offline, against a trusted_root.json and an explicit
// signer policy.
//
// It owns the trust decision for policy signatures and nothing else. It
// must not import anything under hub/ (the offline auditor CLI uses it
// too), must not touch the network (no TUF fetch, no Rekor lookups: the
// trusted root is given, the log proof must be in the bundle) and does
// not parse the policy it checks: callers parse a policy only after
// Verify has accepted its bytes.
//
// # API
//
//	tr, err := policysig.ParseTrustedRoot(trustedRootJSON) // *root.TrustedRoot
//	v, err := policysig.New(tr,
//		policysig.WithIdentity(policysig.Identity{
//			Issuer: "https://token.actions.githubusercontent.com",
//			SANRegex: `https://github\.com/acme/policies/\.github/workflows/sign\.yml@refs/heads/main`,
//		}),
//		// and/or key signing:
//		policysig.WithPublicKeyPEM(cosignPub),
//		// only for key-signed fleets without internet:
//		policysig.WithoutTlogUnsafe(),
//	)
//	res, err := v.Verify(policyBytes, bundleJSON)
//
// A group's configuration can be kept as JSON and turned into options:
//
//	p, err := policysig.ParseSignerPolicy(groupJSON) // {"identities":[...],"public_keys":["-----BEGIN PUBLIC KEY-----..."],"key_only_without_tlog_unsafe":false}
//	v, err := policysig.NewFromPolicy(tr, p)
//
// Result carries the policy digest ("sha256:<hex>" of the exact bytes),
// whether it was key-signed, the signer (SAN and OIDC issuer, or key id
// "sha256:<hex of PKIX DER>"), the verified transparency-log entries (log
// index, log id, integrated time when a signed entry timestamp covers
// it), the earliest verified integrated time, verified RFC 3161
// timestamps and the bundle media type. Result.Signer() is a one-line
// signer name for records and logs.
//
// Every error from Verify wraps one of ErrMalformedBundle,
// ErrNotMessageSignature (DSSE bundles: policies are blobs),
// ErrUntrustedSigner (a valid signature by someone not allowed) or
// ErrVerification (signature, digest, chain, log or timestamp failed);
// New returns ErrConfig for a signer policy that would be unsafe or
// inconsistent (no signer at all, an identity with an open issuer or SAN,
// a keyless verifier without a trusted root).
//
// Signing (for `rat policy sign` and `rat init-baseline --sign`):
// SignWithKey(ctx, policy, crypto.Signer[, WithRekorUpload(url, timeout)])
// and SignKeyless(ctx, policy, idToken, fulcioURL, rekorURL, timeout)
// return v0.3 bundle JSON that `cosign verify-blob` accepts. Package
// policysigtest makes keyless bundles from sigstore-go's virtual Sigstore
// for tests of code that uses this package.
//
// Cost (BenchmarkVerify, 2 cores): about 10 ms per keyless check (the
// signature is checked twice, once without and once with the identity
// policy, so a wrong signer and a bad signature get different errors),
// about 0.2 ms per key-only check.
//
// # Trust decisions
//
//   - A bundle must carry a transparency-log entry that verifies against
//     a Rekor log of the trusted root (inclusion promise and/or proof),
//     unless the verifier was built WithoutTlogUnsafe; entries present
//     are verified even then.
//   - Keyless bundles need a verified time for their short-lived
//     certificate: a signed entry timestamp or an RFC 3161 timestamp from
//     a TSA of the trusted root. Every kind of timestamp that is present
//     and checkable must verify.
//   - Keyless bundles need an SCT when the trusted root lists CT logs.
//   - Identities match the certificate's issuer and SAN exactly or by an
//     anchored regular expression; both parts are mandatory.
//   - Key-signed bundles are checked against each configured key in turn;
//     the bundle's key hint is ignored because it is not authenticated.
package policysig
