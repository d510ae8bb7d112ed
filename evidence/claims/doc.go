// Package claims owns the device's claims set: the small EAT (RFC 9711)
// claims set that a device binds into every TPM quote, and the hash chain
// that links successive quotes.
//
// The TPM signs only what it is given as qualifying data (TPMS_ATTEST
// extraData). Ratatouille gives it QualifyingData(claims): the SHA-256 of the
// deterministic CBOR encoding of the claims set, which holds the verifier's
// nonce, the record's sequence number, the digest of the previous quote, the
// boot id, the IMA log position and the running release. So no claim can be
// changed, reordered or replayed without breaking a TPM signature, and a
// verifier (the hub, or an auditor offline) sees gaps, replays and reboots.
//
// The package is pure: no I/O, no clock. It must not import anything outside
// the evidence module and the standard library except fxamacker/cbor.
package claims
