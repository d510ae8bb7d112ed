package eventlog

import (
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf16"
)

// GUID is an EFI_GUID in its in-memory (mixed-endian) encoding.
type GUID [16]byte

// String formats the GUID as UEFI writes it (8-4-4-4-12 hex).
func (g GUID) String() string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x",
		binary.LittleEndian.Uint32(g[0:4]), binary.LittleEndian.Uint16(g[4:6]), binary.LittleEndian.Uint16(g[6:8]), g[8:10], g[10:16])
}

func mustGUID(s string) GUID {
	var a, b, c uint32
	var d, e uint64
	if _, err := fmt.Sscanf(s, "%08x-%04x-%04x-%04x-%012x", &a, &b, &c, &d, &e); err != nil {
		panic(err)
	}
	var g GUID
	binary.LittleEndian.PutUint32(g[0:], a)
	binary.LittleEndian.PutUint16(g[4:], uint16(b))
	binary.LittleEndian.PutUint16(g[6:], uint16(c))
	binary.BigEndian.PutUint16(g[8:], uint16(d))
	for i := 0; i < 6; i++ {
		g[10+i] = byte(e >> (8 * (5 - i)))
	}
	return g
}

// Well-known GUIDs (UEFI 2.x).
var (
	EFIGlobalVariable     = mustGUID("8be4df61-93ca-11d2-aa0d-00e098032b8c") // SecureBoot, PK, KEK
	EFIImageSecurityDB    = mustGUID("d719b2cb-3d3a-4596-a3bc-dad00e67656f") // db, dbx, dbt, dbr
	EFICertX509GUID       = mustGUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")
	EFICertSHA256GUID     = mustGUID("c1c41626-504c-4092-aca9-41f936934328")
	efiSignatureListFixed = 16 + 4 + 4 + 4
)

// Variable is a decoded UEFI_VARIABLE_DATA: what EV_EFI_VARIABLE_* events
// carry.
type Variable struct {
	GUID GUID
	Name string
	Data []byte
}

// ParseVariable decodes UEFI_VARIABLE_DATA: VariableName (GUID),
// UnicodeNameLength and VariableDataLength (UINT64, in characters and
// bytes), UnicodeName (UTF-16LE), VariableData.
func ParseVariable(b []byte) (Variable, error) {
	var v Variable
	if len(b) < 32 {
		return v, fmt.Errorf("eventlog: UEFI_VARIABLE_DATA of %d bytes (header is 32)", len(b))
	}
	copy(v.GUID[:], b[:16])
	nameLen := binary.LittleEndian.Uint64(b[16:24])
	dataLen := binary.LittleEndian.Uint64(b[24:32])
	rest := uint64(len(b) - 32)
	// Compare before multiplying or adding, so that no length can wrap.
	if nameLen > rest/2 || dataLen > rest-2*nameLen {
		return v, fmt.Errorf("eventlog: UEFI_VARIABLE_DATA: name of %d chars and data of %d bytes exceed the %d bytes present", nameLen, dataLen, rest)
	}
	if 2*nameLen+dataLen != rest {
		return v, fmt.Errorf("eventlog: UEFI_VARIABLE_DATA: %d trailing bytes", rest-2*nameLen-dataLen)
	}
	u := make([]uint16, nameLen)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[32+2*i:])
	}
	v.Name = string(utf16.Decode(u))
	v.Data = b[32+2*nameLen:]
	return v, nil
}

// Signature is one EFI_SIGNATURE_DATA of a signature database.
type Signature struct {
	Type  GUID   // EFI_CERT_X509_GUID, EFI_CERT_SHA256_GUID, ...
	Owner GUID   // SignatureOwner
	Data  []byte // a DER certificate, a hash, ...
}

// Subject is the certificate subject of an X.509 entry ("" otherwise or
// if the certificate does not parse).
func (s Signature) Subject() string {
	if s.Type != EFICertX509GUID {
		return ""
	}
	c, err := x509.ParseCertificate(s.Data)
	if err != nil {
		return ""
	}
	return c.Subject.String()
}

// ParseSignatureLists decodes the EFI_SIGNATURE_LIST sequence that PK,
// KEK, db and dbx hold.
func ParseSignatureLists(b []byte) ([]Signature, error) {
	var out []Signature
	for off := 0; off < len(b); {
		if len(b)-off < efiSignatureListFixed {
			return nil, fmt.Errorf("eventlog: EFI_SIGNATURE_LIST at %d: %d bytes left (header is %d)", off, len(b)-off, efiSignatureListFixed)
		}
		var typ GUID
		copy(typ[:], b[off:off+16])
		listSize := uint64(binary.LittleEndian.Uint32(b[off+16:]))
		hdrSize := uint64(binary.LittleEndian.Uint32(b[off+20:]))
		sigSize := uint64(binary.LittleEndian.Uint32(b[off+24:]))
		switch {
		case listSize > uint64(len(b)-off) || listSize < uint64(efiSignatureListFixed):
			return nil, fmt.Errorf("eventlog: EFI_SIGNATURE_LIST at %d: SignatureListSize %d with %d bytes left", off, listSize, len(b)-off)
		case hdrSize > listSize-uint64(efiSignatureListFixed):
			return nil, fmt.Errorf("eventlog: EFI_SIGNATURE_LIST at %d: SignatureHeaderSize %d", off, hdrSize)
		case sigSize < 16:
			return nil, fmt.Errorf("eventlog: EFI_SIGNATURE_LIST at %d: SignatureSize %d (owner GUID alone is 16)", off, sigSize)
		}
		body := listSize - uint64(efiSignatureListFixed) - hdrSize
		if body%sigSize != 0 {
			return nil, fmt.Errorf("eventlog: EFI_SIGNATURE_LIST at %d: %d bytes of signatures is not a multiple of SignatureSize %d", off, body, sigSize)
		}
		p := off + efiSignatureListFixed + int(hdrSize)
		for end := off + int(listSize); p < end; p += int(sigSize) {
			s := Signature{Type: typ, Data: b[p+16 : p+int(sigSize)]}
			copy(s.Owner[:], b[p:p+16])
			out = append(out, s)
		}
		off += int(listSize)
	}
	return out, nil
}

// SecureBootVar is a Secure Boot configuration variable that PCR 7
// records.
type SecureBootVar struct {
	Event      int // event number in the log
	Name       string
	GUID       GUID
	Data       []byte
	Signatures []Signature // for PK, KEK, db, dbx, dbt, dbr
}

// State is what PCR 7 says about Secure Boot. It is only as trustworthy
// as the replay of PCR 7: use it after Verify, with PCR 7 among the quoted
// PCRs, found no critical event.
type State struct {
	// Measured reports that the firmware measured the SecureBoot variable.
	Measured bool
	// Enabled reports SecureBoot = 1.
	Enabled bool
	// Variables are the EV_EFI_VARIABLE_DRIVER_CONFIG events of PCR 7, in
	// log order (SecureBoot, PK, KEK, db, dbx, and others the firmware
	// chooses to measure).
	Variables []SecureBootVar
	// Separator reports that PCR 7's EV_SEPARATOR was seen: the
	// configuration above is complete, what follows is authorities.
	Separator bool
	// Authorities are the EV_EFI_VARIABLE_AUTHORITY events of PCR 7: the
	// db (or shim MokList) entries that verified each loaded image.
	Authorities []SecureBootVar
}

// Variable returns the named configuration variable.
func (s *State) Variable(name string) (*SecureBootVar, bool) {
	for i := range s.Variables {
		if s.Variables[i].Name == name {
			return &s.Variables[i], true
		}
	}
	return nil, false
}

var signatureDBs = map[string]GUID{"PK": EFIGlobalVariable, "KEK": EFIGlobalVariable, "db": EFIImageSecurityDB, "dbx": EFIImageSecurityDB, "dbt": EFIImageSecurityDB, "dbr": EFIImageSecurityDB}

// SecureBoot decodes the Secure Boot state recorded in PCR 7. It fails if
// a PCR 7 variable or separator event does not decode, or if its data does
// not hash to its digest in any bank the log carries: that data is what
// the state is read from, and the replay alone does not cover it.
func (l *Log) SecureBoot() (State, error) {
	var st State
	for _, b := range l.Banks {
		if _, ok := hashOf(b.Alg); !ok {
			continue
		}
		if e, err := l.checkBinding(b.Alg, 7); err != nil {
			return st, err
		} else if e != nil {
			return st, fmt.Errorf("eventlog: event %d (%s, PCR 7): data does not hash to its %s digest", e.Num, e.Type, AlgName(b.Alg))
		}
	}
	for i := range l.Events {
		e := &l.Events[i]
		if e.PCR != 7 {
			continue
		}
		switch e.Type {
		case EvSeparator:
			st.Separator = true
		case EvEFIVariableDriverConfig, EvEFIVariableAuthority:
			v, err := ParseVariable(e.Data)
			if err != nil {
				return st, fmt.Errorf("eventlog: event %d (%s): %w", e.Num, e.Type, err)
			}
			sv := SecureBootVar{Event: e.Num, Name: v.Name, GUID: v.GUID, Data: v.Data}
			if e.Type == EvEFIVariableAuthority {
				st.Authorities = append(st.Authorities, sv)
				continue
			}
			if g, ok := signatureDBs[v.Name]; ok && g == v.GUID && len(v.Data) > 0 {
				if sv.Signatures, err = ParseSignatureLists(v.Data); err != nil {
					return st, fmt.Errorf("eventlog: event %d (%s %s): %w", e.Num, e.Type, v.Name, err)
				}
			}
			if v.Name == "SecureBoot" && v.GUID == EFIGlobalVariable {
				if st.Measured {
					return st, fmt.Errorf("eventlog: event %d: SecureBoot measured twice", e.Num)
				}
				// SecureBoot is one byte (UEFI 2.x, 3.3); an empty value means
				// the variable does not exist, i.e. Secure Boot is off.
				switch {
				case len(v.Data) == 0:
				case len(v.Data) == 1 && v.Data[0] <= 1:
					st.Enabled = v.Data[0] == 1
				default:
					return st, fmt.Errorf("eventlog: event %d: SecureBoot value %x is not 0 or 1", e.Num, v.Data)
				}
				st.Measured = true
			}
			st.Variables = append(st.Variables, sv)
		}
	}
	return st, nil
}

// errNoSeparator is kept for callers that require a complete PCR 7.
var errNoSeparator = errors.New("eventlog: PCR 7 has no EV_SEPARATOR")

// Complete fails unless PCR 7 has its separator and the SecureBoot
// variable was measured: without them the state is partial.
func (s *State) Complete() error {
	if !s.Separator {
		return errNoSeparator
	}
	if !s.Measured {
		return errors.New("eventlog: SecureBoot variable not measured in PCR 7")
	}
	return nil
}
