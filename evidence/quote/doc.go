// Package quote verifies TPM 2.0 quotes: a TPMS_ATTEST structure, the
// TPMT_SIGNATURE over it, and the PCR values it commits to.
//
// It decodes both structures with a direct, bounds-checked decoder (no
// reflection: go-tpm's reflective Unmarshal costs as much as the signature
// check), checks the signature before looking deeper, and reports each
// failed check as a distinct evidence/failure id. It is pure: no TPM, no
// files. It must not import any package of this project except
// evidence/failure.
package quote
