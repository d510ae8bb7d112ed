// Package release is the relying party of the secret-release example: an
// HTTP service that hands a secret only to a caller presenting a valid,
// affirming attestation-result token (hub/ear) for its own device.
//
// It owns: fetching and caching the hub's JWKS, verifying tokens with a
// generic JWT library (golang-jwt) the way any relying party would, issuing
// and consuming its own single-use nonces, asking the hub whether a token is
// revoked, and the HTTP handler. It must not import hub packages: a relying
// party knows the hub only by its URL and published keys.
package release
