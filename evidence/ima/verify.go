package ima

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"fmt"

	"github.com/ratatouille/rat/evidence/failure"
)

// VerifyTemplateHash checks that the entry's logged SHA-1 template hash is
// the hash of its own template data, so that the file digest and path the
// entry shows are what the kernel extended into the PCR. Violations carry
// no template data to check and pass. A mismatch is a failure.Error with
// id failure.IMAParsingError naming the path and both hashes.
func (e Entry) VerifyTemplateHash() error {
	if e.IsViolation() {
		return nil
	}
	// Kernels log SHA-1 template hashes; logs with 32-byte template hashes
	// (Keylime's sm3_256 test logs) are checked as SHA-256.
	var sum [sha256.Size]byte
	var got []byte
	switch len(e.TemplateHash) {
	case sha1.Size:
		h := sha1.Sum(e.TemplateData)
		got = sum[:copy(sum[:], h[:])]
	case sha256.Size:
		sum = sha256.Sum256(e.TemplateData)
		got = sum[:]
	default:
		return failure.New(failure.IMAParsingError, "%s: template hash is %d bytes, want %d or %d", e.Path, len(e.TemplateHash), sha1.Size, sha256.Size)
	}
	if e.TemplateData == nil {
		return failure.New(failure.IMAParsingError, "%s: no template data", e.Path)
	}
	if !bytes.Equal(got, e.TemplateHash) {
		// A copy goes into the message, so that sum stays on the stack.
		return failure.New(failure.IMAParsingError, "%s: template hash mismatch: logged %x, fields hash to %x", e.Path, e.TemplateHash, bytes.Clone(got))
	}
	return nil
}

// VerifyTemplateHashes checks every entry with VerifyTemplateHash and
// returns the first failure, naming the entry's index (offset+i).
func VerifyTemplateHashes(entries []Entry, offset int) error {
	for i := range entries {
		if err := entries[i].VerifyTemplateHash(); err != nil {
			return fmt.Errorf("ima: entry %d: %w", offset+i, err)
		}
	}
	return nil
}
