// Package bundle owns the offline evidence bundle: the one file an auditor
// receives to replay a device's attestation history without trusting the
// operator or us (docs/bundle-format.md has the CDDL).
//
// A bundle is a CBOR sequence (RFC 8742) of CMW items
// (draft-ietf-rats-msg-wrap, veraison/cmw): a header collection (EAT about
// the span, device identity, AK and the hub's signed AK-EK binding,
// Sigstore trusted root), then in time order policy collections and
// evidence records (the protocol.Evidence records the agent sends and the
// hub stores, unchanged, so both can export straight from what they have),
// then an end collection with a summary and an optional COSE_Sign1 by the
// exporting hub. Every element is bounded and read one at a time, so a day
// of evidence never has to be in memory.
//
// The package encodes, decodes and checks the format only (element bounds,
// media types, the end digest, COSE signatures when asked). What the
// evidence proves is decided by the verifier (the root module's audit
// package). It must not import sigstore-go, the hub, storage or network
// code. The encoding side (types, media types, Encoder) is package
// bundle/wire, re-exported here; the device agent imports wire only, so
// veraison/cmw and go-cose stay out of its binary.
package bundle
