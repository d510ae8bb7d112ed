// Package ear turns the hub's judgement of one device into EAT Attestation
// Results (draft-ietf-rats-ear, via github.com/veraison/ear) that a relying
// party checks on its own: ES256 JWTs carrying the AR4SI trust vector, a
// relying-party nonce, an audience and a short lifetime, signed by rotating
// hub keys published as a JWKS.
//
// It owns: the Appraisal -> trust vector mapping, signing keys (KeyStore,
// FileKeyStore), token issuance (Issuer.Issue, Issuer.IssueForDevice),
// revocation (Issuer.Revoke, token status by id, subscriber channels and
// webhook pushes of signed revocation events) with a Persister hook
// (BoltPersister), and the HTTP handlers (NewHandler).
//
// It must not import the hub's server, store or verifier packages: the hub
// feeds it device state through the Source interface defined here, so the
// dependency points from the hub to this package and never back (the hub's
// Source over its store is hub/ear/storesource; rat-hub serve wires both in
// cmd/rat-hub/ear.go). It must not import anything from the device module.
package ear
