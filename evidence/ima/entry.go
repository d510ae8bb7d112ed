package ima

import (
	"fmt"

	"github.com/ratatouille/rat/evidence/failure"
)

// Entry is one record of the IMA measurement list, whichever form (ascii
// or binary) it was read from.
type Entry struct {
	// PCR is the PCR index the kernel extended (10 by default).
	PCR uint32
	// TemplateHash is the digest the kernel logged for this entry (SHA-1 in
	// the ascii log and the binary log's header field). All zero for a
	// violation.
	TemplateHash []byte
	// TemplateName is the template, e.g. "ima-ng", "ima-sig", "ima-buf", "ima".
	TemplateName string
	// TemplateData is the raw template data ([len][field]... for ima-ng and
	// later templates) when read from the binary log or rebuilt from the
	// ascii fields; the sha256 bank extends sha256(TemplateData).
	TemplateData []byte

	// DigestAlg is the file digest algorithm name ("sha1", "sha256", ...)
	// of the d-ng field; "sha1" for the legacy "ima" template.
	DigestAlg string
	// Digest is the file (or buffer) digest.
	Digest []byte
	// Path is the n-ng field: the file path, or the buffer name for ima-buf
	// (for example a keyring name or "kernel_version").
	Path string
	// Signature is the ima-sig "sig" field (may be empty).
	Signature []byte
	// Buf is the ima-buf "buf" field.
	Buf []byte
}

// IsViolation reports whether the kernel logged this entry as a violation
// (a file measured while open for write, or similar): its template hash is
// all zero, and the PCR is extended with all 0xFF bytes instead.
func (e Entry) IsViolation() bool {
	if len(e.TemplateHash) == 0 {
		return false
	}
	for _, b := range e.TemplateHash {
		if b != 0 {
			return false
		}
	}
	return true
}

// CheckTemplateHashes runs VerifyTemplateHash on each entry and returns one
// failure event (ima.parser.invalid_entry) per entry that fails, naming it;
// VerifyTemplateHashes stops at the first.
func CheckTemplateHashes(entries []Entry) []failure.Event {
	var out []failure.Event
	for i, e := range entries {
		if err := e.VerifyTemplateHash(); err != nil {
			out = append(out, failure.Event{ID: failure.IMAParsingError, Severity: failure.Critical, Context: fmt.Sprintf("entry %d: %v", i+1, err)})
		}
	}
	return out
}
