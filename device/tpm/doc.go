// Package tpm is the agent's TPM: it opens a TPM (the kernel's resource
// manager /dev/tpmrm0, /dev/tpm0, or an MS-simulator TCP endpoint such as
// swtpm's for tests and development), creates the attestation key in the
// endorsement hierarchy and produces quotes.
//
// It speaks to the TPM through go-tpm only (no cgo). It must not import
// hub-side packages; it may import evidence packages.
package tpm
