package eventlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// TPM hash algorithm ids (TPM 2.0 Part 2, TPM_ALG_ID) that a log may use.
const (
	AlgSHA1   uint16 = 0x0004
	AlgSHA256 uint16 = 0x000b
	AlgSHA384 uint16 = 0x000c
	AlgSHA512 uint16 = 0x000d
	AlgSM3    uint16 = 0x0012
)

// Limits on hostile input. Real firmware logs are tens to a few hundred KiB.
const (
	// MaxLogSize bounds the whole log.
	MaxLogSize = 16 << 20
	// MaxPCR is the highest PCR index a PC Client TPM has.
	MaxPCR = 23
	// maxAlgs bounds numberOfAlgorithms in the Spec ID header: a TPM has a
	// handful of banks.
	maxAlgs = 16
	// maxDigestSize bounds digestSize in the Spec ID header (SHA-512).
	maxDigestSize = 64
)

// ErrBank is returned when a log has no digests for the requested bank.
var ErrBank = errors.New("eventlog: bank not in log")

// AlgName is the tpm2-tools name of a hash algorithm ("sha256").
func AlgName(alg uint16) string {
	switch alg {
	case AlgSHA1:
		return "sha1"
	case AlgSHA256:
		return "sha256"
	case AlgSHA384:
		return "sha384"
	case AlgSHA512:
		return "sha512"
	case AlgSM3:
		return "sm3_256"
	}
	return fmt.Sprintf("alg(0x%04x)", alg)
}

// AlgByName is the inverse of AlgName for the algorithms Replay supports.
func AlgByName(name string) (uint16, bool) {
	switch name {
	case "sha1":
		return AlgSHA1, true
	case "sha256":
		return AlgSHA256, true
	case "sha384":
		return AlgSHA384, true
	case "sha512":
		return AlgSHA512, true
	}
	return 0, false
}

// knownSize is the digest size of algorithms whose size is fixed by the
// TPM specification; the Spec ID header may not redefine it.
func knownSize(alg uint16) (int, bool) {
	switch alg {
	case AlgSHA1:
		return 20, true
	case AlgSHA256, AlgSM3:
		return 32, true
	case AlgSHA384:
		return 48, true
	case AlgSHA512:
		return 64, true
	}
	return 0, false
}

// Format says which of the two log forms was read.
type Format int

const (
	// CryptoAgile is TCG_PCR_EVENT2 entries after a Spec ID Event03 header.
	CryptoAgile Format = iota + 1
	// SHA1 is the legacy form: TCG_PCClientPCREvent with one SHA-1 digest.
	SHA1
)

func (f Format) String() string {
	switch f {
	case CryptoAgile:
		return "crypto-agile"
	case SHA1:
		return "sha1"
	}
	return fmt.Sprintf("format(%d)", int(f))
}

// Bank is one algorithm the Spec ID header declares.
type Bank struct {
	Alg        uint16
	DigestSize int
}

// Digest is one digest an event carries.
type Digest struct {
	Alg   uint16
	Value []byte
}

// Event is one log entry. Num counts from 0 in log order; for a
// crypto-agile log event 0 is the Spec ID header, which is not in Events.
type Event struct {
	Num     int
	Offset  int // byte offset of the entry in the log
	PCR     int
	Type    EventType
	Digests []Digest
	Data    []byte
}

// Digest returns the event's digest in bank alg.
func (e *Event) Digest(alg uint16) ([]byte, bool) {
	for _, d := range e.Digests {
		if d.Alg == alg {
			return d.Value, true
		}
	}
	return nil, false
}

// Log is a parsed, unverified event log.
type Log struct {
	Format Format
	// Banks are the algorithms of the Spec ID header (crypto-agile) or
	// SHA-1 alone (legacy).
	Banks []Bank
	// Header is the Spec ID event of a crypto-agile log (nil for SHA-1).
	Header *Event
	// Events excludes the Spec ID header event of a crypto-agile log.
	Events []Event
}

var specIDSignature = []byte("Spec ID Event03\x00")

type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) take(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b)-r.off < n {
		r.err = fmt.Errorf("%s at offset %d: want %d bytes, have %d", what, r.off, n, len(r.b)-r.off)
		return nil
	}
	p := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return p
}

func (r *reader) u8(what string) uint8 {
	if p := r.take(1, what); p != nil {
		return p[0]
	}
	return 0
}

func (r *reader) u16(what string) uint16 {
	if p := r.take(2, what); p != nil {
		return binary.LittleEndian.Uint16(p)
	}
	return 0
}

func (r *reader) u32(what string) uint32 {
	if p := r.take(4, what); p != nil {
		return binary.LittleEndian.Uint32(p)
	}
	return 0
}

// sized reads a 32-bit length and that many bytes. The length is checked
// against what remains before anything is allocated or sliced.
func (r *reader) sized(what string) []byte {
	n := r.u32(what + " size")
	if r.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(r.b)-r.off) {
		r.err = fmt.Errorf("%s at offset %d: size %d exceeds the %d bytes left", what, r.off, n, len(r.b)-r.off)
		return nil
	}
	return r.take(int(n), what)
}

// Parse reads a firmware event log in either form. The result references a
// private copy of data. Parse only checks structure; call Verify to learn
// whether the log matches a quote.
func Parse(data []byte) (*Log, error) {
	if len(data) > MaxLogSize {
		return nil, fmt.Errorf("eventlog: log of %d bytes exceeds %d", len(data), MaxLogSize)
	}
	if len(data) == 0 {
		return nil, errors.New("eventlog: empty log")
	}
	data = bytes.Clone(data)
	r := &reader{b: data}
	first, err := legacyEvent(r, 0)
	if err != nil {
		return nil, err
	}
	l := &Log{}
	if first.Type == EvNoAction && bytes.HasPrefix(first.Data, specIDSignature) {
		if first.PCR != 0 || !bytes.Equal(first.Digests[0].Value, make([]byte, 20)) {
			return nil, errors.New("eventlog: Spec ID event: PCR index and digest must be zero")
		}
		if l.Banks, err = parseSpecID(first.Data); err != nil {
			return nil, err
		}
		l.Format = CryptoAgile
		l.Header = &first
		for n := 1; r.off < len(r.b); n++ {
			e, err := agileEvent(r, n, l.Banks)
			if err != nil {
				return nil, err
			}
			l.Events = append(l.Events, e)
		}
		return l, nil
	}
	l.Format = SHA1
	l.Banks = []Bank{{Alg: AlgSHA1, DigestSize: 20}}
	l.Events = append(l.Events, first)
	for n := 1; r.off < len(r.b); n++ {
		e, err := legacyEvent(r, n)
		if err != nil {
			return nil, err
		}
		l.Events = append(l.Events, e)
	}
	return l, nil
}

func checkPCR(e *Event) error {
	// EV_NO_ACTION events extend nothing; their PCR index is informative.
	if e.Type != EvNoAction && (e.PCR < 0 || e.PCR > MaxPCR) {
		return fmt.Errorf("eventlog: event %d at offset %d: PCR index %d out of range 0-%d", e.Num, e.Offset, e.PCR, MaxPCR)
	}
	return nil
}

// legacyEvent reads a TCG_PCClientPCREvent: pcrIndex, eventType,
// digest[20], eventDataSize, event.
func legacyEvent(r *reader, n int) (Event, error) {
	e := Event{Num: n, Offset: r.off}
	pcr := r.u32("pcrIndex")
	e.Type = EventType(r.u32("eventType"))
	d := r.take(20, "SHA-1 digest")
	e.Data = r.sized("event data")
	if r.err != nil {
		return e, fmt.Errorf("eventlog: event %d: %w", n, r.err)
	}
	e.PCR = int(int32(pcr))
	e.Digests = []Digest{{Alg: AlgSHA1, Value: d}}
	return e, checkPCR(&e)
}

// agileEvent reads a TCG_PCR_EVENT2: pcrIndex, eventType,
// TPML_DIGEST_VALUES, eventSize, event.
func agileEvent(r *reader, n int, banks []Bank) (Event, error) {
	e := Event{Num: n, Offset: r.off}
	pcr := r.u32("pcrIndex")
	e.Type = EventType(r.u32("eventType"))
	count := r.u32("digest count")
	if r.err != nil {
		return e, fmt.Errorf("eventlog: event %d: %w", n, r.err)
	}
	// The PC Client profile requires one digest per bank of the header, so
	// the count is bounded by it (and a measured event needs all of them).
	if count > uint32(len(banks)) {
		return e, fmt.Errorf("eventlog: event %d at offset %d: %d digests, the header declares %d banks", n, e.Offset, count, len(banks))
	}
	e.Digests = make([]Digest, 0, count)
	for i := uint32(0); i < count; i++ {
		alg := r.u16("digest algorithm")
		if r.err != nil {
			break
		}
		size := -1
		for _, b := range banks {
			if b.Alg == alg {
				size = b.DigestSize
			}
		}
		if size < 0 {
			return e, fmt.Errorf("eventlog: event %d at offset %d: digest algorithm %s not declared in the Spec ID header", n, e.Offset, AlgName(alg))
		}
		if _, dup := e.Digest(alg); dup {
			return e, fmt.Errorf("eventlog: event %d at offset %d: two %s digests", n, e.Offset, AlgName(alg))
		}
		e.Digests = append(e.Digests, Digest{Alg: alg, Value: r.take(size, AlgName(alg)+" digest")})
	}
	e.Data = r.sized("event data")
	if r.err != nil {
		return e, fmt.Errorf("eventlog: event %d: %w", n, r.err)
	}
	e.PCR = int(int32(pcr))
	if e.Type != EvNoAction && len(e.Digests) != len(banks) {
		return e, fmt.Errorf("eventlog: event %d at offset %d: %d digests for %d banks", n, e.Offset, len(e.Digests), len(banks))
	}
	return e, checkPCR(&e)
}

// parseSpecID reads TCG_EfiSpecIdEvent: signature, platformClass,
// specVersionMinor/Major, specErrata, uintnSize, numberOfAlgorithms,
// digestSizes, vendorInfoSize, vendorInfo.
func parseSpecID(b []byte) ([]Bank, error) {
	r := &reader{b: b}
	r.take(len(specIDSignature), "signature")
	r.u32("platformClass")
	r.u8("specVersionMinor")
	major := r.u8("specVersionMajor")
	r.u8("specErrata")
	uintn := r.u8("uintnSize")
	n := r.u32("numberOfAlgorithms")
	if r.err != nil {
		return nil, fmt.Errorf("eventlog: Spec ID event: %w", r.err)
	}
	if major != 2 {
		return nil, fmt.Errorf("eventlog: Spec ID event: specVersionMajor %d, want 2", major)
	}
	if uintn != 1 && uintn != 2 {
		return nil, fmt.Errorf("eventlog: Spec ID event: uintnSize %d, want 1 or 2", uintn)
	}
	if n == 0 || n > maxAlgs {
		return nil, fmt.Errorf("eventlog: Spec ID event: %d algorithms (want 1-%d)", n, maxAlgs)
	}
	banks := make([]Bank, 0, n)
	for i := uint32(0); i < n; i++ {
		alg, size := r.u16("algorithmId"), int(r.u16("digestSize"))
		if r.err != nil {
			return nil, fmt.Errorf("eventlog: Spec ID event: %w", r.err)
		}
		if size == 0 || size > maxDigestSize {
			return nil, fmt.Errorf("eventlog: Spec ID event: %s digest size %d", AlgName(alg), size)
		}
		if want, ok := knownSize(alg); ok && want != size {
			return nil, fmt.Errorf("eventlog: Spec ID event: %s digest size %d, want %d", AlgName(alg), size, want)
		}
		for _, b := range banks {
			if b.Alg == alg {
				return nil, fmt.Errorf("eventlog: Spec ID event: %s declared twice", AlgName(alg))
			}
		}
		banks = append(banks, Bank{Alg: alg, DigestSize: size})
	}
	r.take(int(r.u8("vendorInfoSize")), "vendorInfo")
	if r.err != nil {
		return nil, fmt.Errorf("eventlog: Spec ID event: %w", r.err)
	}
	if r.off != len(b) {
		return nil, fmt.Errorf("eventlog: Spec ID event: %d trailing bytes", len(b)-r.off)
	}
	return banks, nil
}

// Marshal encodes the log in its own format; for a log that Parse
// returned, it gives back the bytes that were parsed.
func (l *Log) Marshal() []byte {
	var b []byte
	u32 := func(v uint32) { b = binary.LittleEndian.AppendUint32(b, v) }
	legacy := func(e *Event) {
		u32(uint32(int32(e.PCR)))
		u32(uint32(e.Type))
		d, _ := e.Digest(AlgSHA1)
		b = append(b, d...)
		u32(uint32(len(e.Data)))
		b = append(b, e.Data...)
	}
	if l.Format == SHA1 {
		for i := range l.Events {
			legacy(&l.Events[i])
		}
		return b
	}
	if l.Header != nil {
		legacy(l.Header)
	}
	for i := range l.Events {
		e := &l.Events[i]
		u32(uint32(int32(e.PCR)))
		u32(uint32(e.Type))
		u32(uint32(len(e.Digests)))
		for _, d := range e.Digests {
			b = binary.LittleEndian.AppendUint16(b, d.Alg)
			b = append(b, d.Value...)
		}
		u32(uint32(len(e.Data)))
		b = append(b, e.Data...)
	}
	return b
}
