// Package ekcert checks a TPM's endorsement-key certificate: that it
// chains to a manufacturer root the verifier trusts, that it is an EK
// certificate (TCG EK Credential Profile), and that it certifies exactly
// the EK the device presented. Only then does a credential-activation
// challenge to that EK prove that an AK lives in a genuine TPM.
//
// It is pure (no files, no network: CRLs/OCSP are not checked yet). It
// must not import any package of this project except evidence/failure.
package ekcert
