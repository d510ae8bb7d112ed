// Package tpmsim holds round-trip tests that need a real TPM: quotes made
// by the go-tpm-tools simulator (the reference TPM 2.0 implementation,
// cgo) and checked by evidence/quote and by tpm2-tools. It lives in the
// root module because the simulator needs Go 1.26, which the evidence and
// device modules must not require. It exports nothing.
package tpmsim
