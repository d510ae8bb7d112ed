package ima

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"fmt"
	"hash"

	"github.com/ratatouille/rat/evidence/failure"

	// Register the hashes a PCR bank may use (crypto/sha256 is imported
	// above).
	_ "crypto/sha1"
	_ "crypto/sha512"
)

// Replayer replays a measurement list into one PCR bank. Advance is
// O(len(delta)): continuous attestation feeds it only the entries that are
// new since the last quote. Advance reuses the value buffer and its hash
// state, so a Replayer must not be copied by value; start a second one with
// Resume(bank, r.Value(), r.Count()).
type Replayer struct {
	bank  crypto.Hash
	value []byte
	count int

	// h and m are reused by every extend of a bank other than SHA-1 and
	// SHA-256 (those two hash on the stack), so that replay allocates
	// nothing per entry.
	h hash.Hash
	m []byte
}

// ffs is the measurement of a violation entry: all 0xFF, as long as the
// longest bank (64 bytes, SHA-512).
var ffs = bytes.Repeat([]byte{0xff}, 64)

// NewReplayer starts a replay of bank from start (nil means the PCR's
// reset value, all zero).
func NewReplayer(bank crypto.Hash, start []byte) (*Replayer, error) {
	if !bank.Available() {
		return nil, fmt.Errorf("ima: replay: hash %v is not available", bank)
	}
	v := make([]byte, bank.Size())
	if start != nil {
		if len(start) != bank.Size() {
			return nil, fmt.Errorf("ima: replay: start value is %d bytes, bank %v needs %d", len(start), bank, bank.Size())
		}
		copy(v, start)
	}
	return &Replayer{bank: bank, value: v}, nil
}

// Value returns the current PCR value (a copy).
func (r *Replayer) Value() []byte { return append([]byte(nil), r.value...) }

// Count is the number of entries replayed so far.
func (r *Replayer) Count() int { return r.count }

// Advance extends the PCR with each entry in order. Entries for a PCR
// other than 10 are consumed (counted) but not extended.
func (r *Replayer) Advance(entries []Entry) error {
	for i := range entries {
		if entries[i].PCR == 10 {
			if err := r.extend(&entries[i]); err != nil {
				return fmt.Errorf("ima: replay entry %d: %w", r.count, err)
			}
		}
		r.count++
	}
	return nil
}

// extend sets the PCR value to H(value || measurement(e)). The measurement
// is what the kernel extends into this bank for e: the logged template
// hash for SHA-1, the bank's hash of the template data for the others, and
// all 0xFF for a violation.
func (r *Replayer) extend(e *Entry) error {
	violation := e.IsViolation()
	if r.bank == crypto.SHA256 {
		// The hub's bank: both hashes on the stack, no allocation.
		var cat [2 * sha256.Size]byte
		copy(cat[:sha256.Size], r.value)
		if violation {
			copy(cat[sha256.Size:], ffs)
		} else {
			if e.TemplateData == nil {
				return fmt.Errorf("no template data to hash for bank %v", r.bank)
			}
			m := sha256.Sum256(e.TemplateData)
			copy(cat[sha256.Size:], m[:])
		}
		v := sha256.Sum256(cat[:])
		copy(r.value, v[:])
		return nil
	}
	var m []byte
	switch {
	case violation && r.bank.Size() <= len(ffs):
		m = ffs[:r.bank.Size()]
	case violation:
		m = bytes.Repeat([]byte{0xff}, r.bank.Size())
	case r.bank == crypto.SHA1:
		if len(e.TemplateHash) != 20 {
			return fmt.Errorf("template hash is %d bytes, want 20", len(e.TemplateHash))
		}
		m = e.TemplateHash
	case e.TemplateData == nil:
		return fmt.Errorf("no template data to hash for bank %v", r.bank)
	}
	if r.h == nil {
		r.h = r.bank.New()
	}
	if m == nil {
		r.h.Reset()
		r.h.Write(e.TemplateData)
		r.m = r.h.Sum(r.m[:0])
		m = r.m
	}
	r.h.Reset()
	r.h.Write(r.value)
	r.h.Write(m)
	r.value = r.h.Sum(r.value[:0])
	return nil
}

// Replay returns PCR 10's value in bank after extending every entry from
// start (nil: all zero). Entries for other PCRs are skipped.
func Replay(entries []Entry, bank crypto.Hash, start []byte) ([]byte, error) {
	r, err := NewReplayer(bank, start)
	if err != nil {
		return nil, err
	}
	if err := r.Advance(entries); err != nil {
		return nil, err
	}
	return r.Value(), nil
}

// MatchPrefix finds the shortest prefix of entries whose replay equals
// quoted, and returns its length. The log keeps growing after a quote is
// taken, so a log read after the quote may hold more entries than the
// quote covers. It returns -1 when no prefix matches.
func MatchPrefix(entries []Entry, bank crypto.Hash, start, quoted []byte) (int, error) {
	r, err := NewReplayer(bank, start)
	if err != nil {
		return -1, err
	}
	if bytes.Equal(r.value, quoted) {
		return 0, nil
	}
	for i := range entries {
		if err := r.Advance(entries[i : i+1]); err != nil {
			return -1, err
		}
		if bytes.Equal(r.value, quoted) {
			return i + 1, nil
		}
	}
	return -1, nil
}

// BootAggregate computes the value IMA records as its first entry,
// "boot_aggregate": the bank's hash over PCRs 0-7 and, for banks other
// than SHA-1 on kernels since 5.8, PCRs 8 and 9 as well.
func BootAggregate(pcrs [][]byte, bank crypto.Hash) ([]byte, error) {
	n := 10
	if bank == crypto.SHA1 {
		n = 8
	}
	if len(pcrs) < n {
		return nil, fmt.Errorf("ima: boot_aggregate for %v needs PCRs 0-%d, have %d", bank, n-1, len(pcrs))
	}
	h := bank.New()
	for i := 0; i < n; i++ {
		if len(pcrs[i]) != bank.Size() {
			return nil, fmt.Errorf("ima: boot_aggregate: PCR %d is %d bytes, want %d", i, len(pcrs[i]), bank.Size())
		}
		h.Write(pcrs[i])
	}
	return h.Sum(nil), nil
}

// AdvanceTo is the hub's step of continuous attestation: from the stored
// state r (the PCR value after r.Count() entries), it consumes entries of
// delta (the log from offset r.Count() on) until the replay equals quoted.
// Each entry's template hash is verified before it is extended. On a match
// it returns the new offset (r.Count()) and r holds the quoted value; the
// entries of delta past that point are for the next quote. Without a match
// r is left unchanged and the result is a failure.IMAPCRMismatch error.
// The work is O(len(delta)).
func (r *Replayer) AdvanceTo(delta []Entry, quoted []byte) (int, error) {
	work := &Replayer{bank: r.bank, value: append([]byte(nil), r.value...), count: r.count}
	if bytes.Equal(work.value, quoted) {
		return r.count, nil
	}
	for i := range delta {
		if err := delta[i].VerifyTemplateHash(); err != nil {
			return r.count, fmt.Errorf("ima: entry %d: %w", work.count, err)
		}
		if err := work.Advance(delta[i : i+1]); err != nil {
			return r.count, err
		}
		if bytes.Equal(work.value, quoted) {
			*r = *work
			return r.count, nil
		}
	}
	return r.count, failure.New(failure.IMAPCRMismatch, "PCR 10 (%v) quoted %x: no prefix of entries %d..%d replays to it", r.bank, quoted, r.count, r.count+len(delta))
}

// Resume continues a replay from a stored state: value is the PCR value
// after count entries. The hub keeps (value, count) per device so that each
// attestation costs O(delta), not O(log).
func Resume(bank crypto.Hash, value []byte, count int) (*Replayer, error) {
	if count < 0 {
		return nil, fmt.Errorf("ima: resume: negative count %d", count)
	}
	r, err := NewReplayer(bank, value)
	if err != nil {
		return nil, err
	}
	r.count = count
	return r, nil
}
