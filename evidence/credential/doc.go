// Package credential binds an attestation key to an endorsement key by
// TPM2_MakeCredential / TPM2_ActivateCredential, on the verifier's side.
//
// The verifier encrypts a fresh secret to the EK, bound to the AK's name;
// only the TPM that holds that EK, and holds an object with exactly that
// name, can recover it. So a correct answer proves the AK lives in the
// same TPM as the (certified) EK. This package is pure: it makes the
// challenge and checks the answer; the TPM side is device/tpm. It must
// not import any package of this project except evidence/failure.
package credential
