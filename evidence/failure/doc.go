// Package failure owns the attestation failure taxonomy shared by the hub,
// the agent and the auditor: event ids that follow Keylime's naming
// (for example "ima.validation.ima-ng.not_in_allowlist"), a severity, and
// the context that says which thing failed and why.
//
// It is a leaf package: it must not import any other package of this
// project, and nothing outside the standard library.
package failure
