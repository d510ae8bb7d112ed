package claims

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Claim keys. Standard keys are the EAT/CWT registry values (RFC 9711,
// RFC 8392); private claims use negative keys below -65536, the range
// RFC 8392 leaves to private use, so that no registered claim can collide.
const (
	KeyNonce      = 10     // eat_nonce: the verifier's challenge
	KeyUEID       = 256    // ueid: derived from the EK public key
	KeyBootSeed   = 268    // bootseed: the kernel's boot id for this boot
	KeySWVersion  = 271    // swversion: the running OTA release
	KeySeq        = -70001 // record sequence number, per device, never reused
	KeyPrev       = -70002 // SHA-256 of the previous quote (attest || signature)
	KeyIMACount   = -70003 // number of IMA log entries the quote covers
	KeySelfIssued = -70004 // true when no verifier nonce was available (air-gapped)
)

// MaxSize bounds an encoded claims set; a real one is about 150 bytes.
const MaxSize = 1024

// Claims is one record's claims set.
type Claims struct {
	// Nonce is the hub's challenge (8–64 bytes per EAT). For self-issued
	// records it is derived from Prev and Seq (see SelfNonce).
	Nonce []byte `cbor:"10,keyasint"`
	// UEID is the device's universal entity id (see UEID).
	UEID []byte `cbor:"256,keyasint"`
	// BootID is the kernel's boot id (/proc/sys/kernel/random/boot_id).
	BootID string `cbor:"268,keyasint,omitempty"`
	// Release is the OTA release the device reports it runs.
	Release string `cbor:"271,keyasint,omitempty"`
	// Seq numbers the device's records from 1; gaps are visible.
	Seq uint64 `cbor:"-70001,keyasint"`
	// Prev is QuoteDigest of the previous record's quote, or empty for the
	// first record after enrollment.
	Prev []byte `cbor:"-70002,keyasint,omitempty"`
	// IMACount is the number of IMA entries of the boot's log the device
	// had read when it made the claims. The kernel logs and extends
	// asynchronously, so the quote may cover a few more or fewer; which
	// entries it covers is what replaying them to the quoted PCR 10 finds.
	IMACount uint64 `cbor:"-70003,keyasint"`
	// SelfIssued says no verifier freshness was available.
	SelfIssued bool `cbor:"-70004,keyasint,omitempty"`
}

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	encMode, err = cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	decMode, err = cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:   4,
		MaxMapPairs:       32,
		MaxArrayElements:  32,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// Marshal encodes c deterministically (RFC 8949 core deterministic
// encoding), so that the same claims always hash to the same qualifying data.
func (c *Claims) Marshal() ([]byte, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	return encMode.Marshal(c)
}

// Unmarshal decodes an encoded claims set and refuses anything that is not
// the canonical encoding of a valid claims set: a verifier hashes the bytes
// it was sent, so two encodings of one claims set must not both be accepted.
func Unmarshal(data []byte) (*Claims, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("claims: %d bytes exceeds %d", len(data), MaxSize)
	}
	var c Claims
	if err := decMode.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("claims: decode: %w", err)
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	again, err := encMode.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("claims: re-encode: %w", err)
	}
	if !bytes.Equal(again, data) {
		return nil, errors.New("claims: not in deterministic encoding")
	}
	return &c, nil
}

func (c *Claims) check() error {
	if n := len(c.Nonce); n < 8 || n > 64 {
		return fmt.Errorf("claims: nonce is %d bytes, want 8..64", n)
	}
	if len(c.UEID) < 7 || len(c.UEID) > 33 {
		return fmt.Errorf("claims: ueid is %d bytes, want 7..33", len(c.UEID))
	}
	if c.Seq == 0 {
		return errors.New("claims: seq must start at 1")
	}
	if len(c.Prev) != 0 && len(c.Prev) != sha256.Size {
		return fmt.Errorf("claims: prev is %d bytes, want %d", len(c.Prev), sha256.Size)
	}
	if len(c.BootID) > 64 || len(c.Release) > 128 {
		return errors.New("claims: boot id or release too long")
	}
	return nil
}

// QualifyingData is what the TPM is asked to sign as extraData: the SHA-256
// of the encoded claims set.
func QualifyingData(encoded []byte) []byte {
	d := sha256.Sum256(encoded)
	return d[:]
}

// QuoteDigest is the chain link from one record to the next: the SHA-256 of
// the quote's TPMS_ATTEST bytes followed by its TPMT_SIGNATURE bytes. The
// attest bytes already contain the qualifying data, so the digest commits to
// the previous record's claims too.
func QuoteDigest(attest, signature []byte) []byte {
	h := sha256.New()
	h.Write(attest)
	h.Write(signature)
	return h.Sum(nil)
}

// SelfNonce is the nonce an air-gapped device uses when it has no verifier
// challenge: the SHA-256 of a domain label, the previous quote's digest and
// the sequence number. It proves order, not freshness; records that use it
// carry SelfIssued.
func SelfNonce(prev []byte, seq uint64) []byte {
	h := sha256.New()
	h.Write([]byte("ratatouille self-issued nonce v1\x00"))
	h.Write(prev)
	var b [8]byte
	for i := 0; i < 8; i++ {
		b[7-i] = byte(seq >> (8 * i))
	}
	h.Write(b[:])
	return h.Sum(nil)
}

// UEID derives the device's UEID from its EK public area (TPMT_PUBLIC
// bytes): type byte 0x01 (RAND, RFC 9711 §4.2.1) followed by the first 32
// bytes of SHA-256 of the EK public area. It is stable for the TPM's life
// and reveals nothing beyond the EK public key.
func UEID(ekPublicArea []byte) []byte {
	d := sha256.Sum256(ekPublicArea)
	return append([]byte{0x01}, d[:]...)
}
