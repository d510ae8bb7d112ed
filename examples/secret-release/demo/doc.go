// Package demo wires a hub token issuer (hub/ear), the secret-release
// service (package release) and device clients together on loopback, with
// a throwaway mTLS CA, for `secret-release -demo` and the example's tests.
//
// It owns the demo CA, the in-memory appraisal table that stands in for the
// hub's verifier, and the narrated run. Nothing here is for production: the
// CA key lives in memory and the hub listens on plain loopback HTTP.
package demo
