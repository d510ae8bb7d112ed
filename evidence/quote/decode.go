package quote

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// TPM constants (TPM 2.0 Part 2).
const (
	GeneratedValue uint32 = 0xff544347 // TPM_GENERATED_VALUE
	TagAttestQuote uint16 = 0x8018     // TPM_ST_ATTEST_QUOTE

	AlgRSASSA uint16 = 0x0014
	AlgRSAPSS uint16 = 0x0016
	AlgECDSA  uint16 = 0x0018

	AlgSHA1   uint16 = 0x0004
	AlgSHA256 uint16 = 0x000b
	AlgSHA384 uint16 = 0x000c
	AlgSHA512 uint16 = 0x000d
)

// ClockInfo is TPMS_CLOCK_INFO.
type ClockInfo struct {
	Clock        uint64
	ResetCount   uint32
	RestartCount uint32
	Safe         bool
}

// PCRSelection is one TPMS_PCR_SELECTION: a bank and the PCRs chosen in it.
type PCRSelection struct {
	Hash uint16
	PCRs []int
	// Size is sizeofSelect as encoded: the bytes of the bitmap, which may
	// extend past the highest selected PCR.
	Size uint8
}

// Attest is a decoded TPMS_ATTEST of type quote.
type Attest struct {
	Magic           uint32
	Type            uint16
	QualifiedSigner []byte
	ExtraData       []byte
	ClockInfo       ClockInfo
	FirmwareVersion uint64
	PCRSelections   []PCRSelection
	PCRDigest       []byte
}

// Signature is a decoded TPMT_SIGNATURE.
type Signature struct {
	Alg  uint16
	Hash uint16
	R, S []byte // ECDSA
	RSA  []byte // RSASSA / RSAPSS
}

var errShort = errors.New("truncated")

type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b)-r.off < n {
		r.err = fmt.Errorf("%w at offset %d: want %d bytes, have %d", errShort, r.off, n, len(r.b)-r.off)
		return nil
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p
}

func (r *reader) u8() uint8 {
	if p := r.take(1); p != nil {
		return p[0]
	}
	return 0
}
func (r *reader) u16() uint16 {
	if p := r.take(2); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}
func (r *reader) u32() uint32 {
	if p := r.take(4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}
func (r *reader) u64() uint64 {
	if p := r.take(8); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}
func (r *reader) tpm2b() []byte { return r.take(int(r.u16())) }

// DecodeAttest decodes a TPMS_ATTEST of type ATTEST_QUOTE. Callers that
// hold a signature must verify it first (Verify does).
func DecodeAttest(b []byte) (*Attest, error) {
	r := &reader{b: b}
	a := &Attest{Magic: r.u32(), Type: r.u16()}
	a.QualifiedSigner = r.tpm2b()
	a.ExtraData = r.tpm2b()
	a.ClockInfo = ClockInfo{Clock: r.u64(), ResetCount: r.u32(), RestartCount: r.u32(), Safe: r.u8() == 1}
	a.FirmwareVersion = r.u64()
	if r.err != nil {
		return nil, fmt.Errorf("quote: TPMS_ATTEST header: %w", r.err)
	}
	if a.Type != TagAttestQuote {
		return a, nil // the caller reports the wrong type
	}
	n := r.u32()
	if n > 16 {
		return nil, fmt.Errorf("quote: TPMS_ATTEST: %d PCR selections (at most 16)", n)
	}
	for i := uint32(0); i < n && r.err == nil; i++ {
		s := PCRSelection{Hash: r.u16()}
		size := r.u8()
		if size > 32 {
			return nil, fmt.Errorf("quote: TPMS_ATTEST: selection %d: sizeofSelect %d", i, size)
		}
		s.Size = size
		bits := r.take(int(size))
		for byteIdx, v := range bits {
			for bit := 0; bit < 8; bit++ {
				if v&(1<<bit) != 0 {
					s.PCRs = append(s.PCRs, byteIdx*8+bit)
				}
			}
		}
		a.PCRSelections = append(a.PCRSelections, s)
	}
	a.PCRDigest = r.tpm2b()
	if r.err != nil {
		return nil, fmt.Errorf("quote: TPMS_ATTEST quote info: %w", r.err)
	}
	if r.off != len(b) {
		return nil, fmt.Errorf("quote: TPMS_ATTEST: %d trailing bytes", len(b)-r.off)
	}
	return a, nil
}

// Marshal encodes a as a TPMS_ATTEST of type quote, so that Marshal of
// what DecodeAttest returns gives back its input for every attest a TPM
// makes (a safe byte other than 0 or 1, which no TPM writes, comes back
// as 0). Evidence bundles use it to leave out the parts of a quote that
// the rest of the record determines and to rebuild the signed bytes
// exactly; a rebuilt quote is believed only after its signature verifies.
// It panics if a PCR index does not fit the selection's Size.
func (a *Attest) Marshal() []byte {
	n := 4 + 2 + 2 + len(a.QualifiedSigner) + 2 + len(a.ExtraData) + 17 + 8 + 4 + 2 + len(a.PCRDigest)
	for _, s := range a.PCRSelections {
		n += 3 + int(s.Size)
	}
	b := make([]byte, 0, n)
	b = binary.BigEndian.AppendUint32(b, a.Magic)
	b = binary.BigEndian.AppendUint16(b, a.Type)
	b = appendTPM2B(b, a.QualifiedSigner)
	b = appendTPM2B(b, a.ExtraData)
	b = binary.BigEndian.AppendUint64(b, a.ClockInfo.Clock)
	b = binary.BigEndian.AppendUint32(b, a.ClockInfo.ResetCount)
	b = binary.BigEndian.AppendUint32(b, a.ClockInfo.RestartCount)
	safe := byte(0)
	if a.ClockInfo.Safe {
		safe = 1
	}
	b = append(b, safe)
	b = binary.BigEndian.AppendUint64(b, a.FirmwareVersion)
	b = binary.BigEndian.AppendUint32(b, uint32(len(a.PCRSelections)))
	for _, s := range a.PCRSelections {
		b = binary.BigEndian.AppendUint16(b, s.Hash)
		b = append(b, s.Size)
		bits := make([]byte, s.Size)
		for _, p := range s.PCRs {
			bits[p/8] |= 1 << (p % 8)
		}
		b = append(b, bits...)
	}
	return appendTPM2B(b, a.PCRDigest)
}

func appendTPM2B(b, v []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

// DecodeSignature decodes a TPMT_SIGNATURE (ECDSA, RSASSA or RSAPSS).
func DecodeSignature(b []byte) (*Signature, error) {
	r := &reader{b: b}
	s := &Signature{Alg: r.u16(), Hash: r.u16()}
	switch s.Alg {
	case AlgECDSA:
		s.R, s.S = r.tpm2b(), r.tpm2b()
	case AlgRSASSA, AlgRSAPSS:
		s.RSA = r.tpm2b()
	default:
		if r.err == nil {
			return nil, fmt.Errorf("quote: TPMT_SIGNATURE: unsupported signature algorithm 0x%04x", s.Alg)
		}
	}
	if r.err != nil {
		return nil, fmt.Errorf("quote: TPMT_SIGNATURE: %w", r.err)
	}
	if r.off != len(b) {
		return nil, fmt.Errorf("quote: TPMT_SIGNATURE: %d trailing bytes", len(b)-r.off)
	}
	return s, nil
}
