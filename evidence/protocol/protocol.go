package protocol

import (
	"errors"
	"fmt"
	"strings"

	"github.com/fxamacker/cbor/v2"
)

// Version is the protocol version carried in every message (key 0) and in
// the topic prefix.
const Version = 1

// MaxMessage bounds every message on the wire. Larger IMA deltas are split
// into several records (see MaxIMAChunk).
const MaxMessage = 128 << 10

// MaxIMAChunk bounds the IMA bytes in one evidence record, leaving room for
// the quote, PCR values and claims within MaxMessage.
const MaxIMAChunk = 112 << 10

// Topic prefix and kinds. Up topics are published by the device, down
// topics by the hub: rat/v1/dt/<fleet>/<device>/<kind> and
// rat/v1/cmd/<fleet>/<device>/<kind>.
const (
	Prefix = "rat/v1"

	KindEnroll   = "enroll"   // up: Enroll
	KindActivate = "activate" // up: Activate
	KindEvidence = "evidence" // up: Evidence
	KindToken    = "token"    // up: TokenRequest

	KindChallenge = "challenge" // down: Challenge
	KindEnrolled  = "enrolled"  // down: Enrolled
	KindAck       = "ack"       // down: Ack
	KindCommand   = "command"   // down: Command
	KindTokenResp = "token"     // down: TokenResponse
)

// UpTopic is the topic a device publishes kind on.
func UpTopic(fleet, device, kind string) string {
	return Prefix + "/dt/" + fleet + "/" + device + "/" + kind
}

// DownTopic is the topic the hub publishes kind on for one device.
func DownTopic(fleet, device, kind string) string {
	return Prefix + "/cmd/" + fleet + "/" + device + "/" + kind
}

// ParseUpTopic splits a device topic. It refuses anything that is not
// exactly rat/v1/dt/<fleet>/<device>/<kind> with valid ids.
func ParseUpTopic(topic string) (fleet, device, kind string, err error) {
	parts := strings.Split(topic, "/")
	if len(parts) != 6 || parts[0]+"/"+parts[1] != Prefix || parts[2] != "dt" {
		return "", "", "", fmt.Errorf("protocol: topic %q is not %s/dt/<fleet>/<device>/<kind>", topic, Prefix)
	}
	if err := ValidID(parts[3]); err != nil {
		return "", "", "", fmt.Errorf("protocol: topic %q: fleet: %w", topic, err)
	}
	if err := ValidID(parts[4]); err != nil {
		return "", "", "", fmt.Errorf("protocol: topic %q: device: %w", topic, err)
	}
	return parts[3], parts[4], parts[5], nil
}

// ValidID checks a fleet, group or device id: 1–64 characters of
// [A-Za-z0-9._-], not starting with a dot. MQTT wildcards and separators can
// never appear, so an id cannot widen a subscription or an ACL.
func ValidID(id string) error {
	if id == "" || len(id) > 64 {
		return errors.New("id must be 1..64 characters")
	}
	if id[0] == '.' {
		return errors.New("id must not start with '.'")
	}
	for _, c := range id {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return fmt.Errorf("id %q has character %q outside [A-Za-z0-9._-]", id, c)
		}
	}
	return nil
}

// Enroll starts enrollment: the device's TPM identity.
type Enroll struct {
	V        int      `cbor:"0,keyasint"`
	Group    string   `cbor:"1,keyasint"`
	EKPublic []byte   `cbor:"2,keyasint"` // TPMT_PUBLIC of the EK
	EKCerts  [][]byte `cbor:"3,keyasint,omitempty"`
	AKPublic []byte   `cbor:"4,keyasint"` // TPMT_PUBLIC of the AK
	BootID   string   `cbor:"5,keyasint,omitempty"`
	Release  string   `cbor:"6,keyasint,omitempty"`
	// Baseline asks the hub to build the group's baseline policy
	// (Baseline::<group>) from this device's first full IMA log.
	Baseline bool `cbor:"7,keyasint,omitempty"`
}

// Challenge is the hub's credential-activation challenge
// (TPM2_MakeCredential output for the device's EK and AK name).
type Challenge struct {
	V         int    `cbor:"0,keyasint"`
	IDObject  []byte `cbor:"1,keyasint"`
	EncSecret []byte `cbor:"2,keyasint"`
}

// Activate answers a Challenge with the secret ActivateCredential recovered.
type Activate struct {
	V      int    `cbor:"0,keyasint"`
	Secret []byte `cbor:"1,keyasint"`
}

// Enrolled ends enrollment. On success Nonce is the first challenge for the
// attestation loop.
type Enrolled struct {
	V      int    `cbor:"0,keyasint"`
	OK     bool   `cbor:"1,keyasint"`
	Reason string `cbor:"2,keyasint,omitempty"`
	Nonce  []byte `cbor:"3,keyasint,omitempty"`
	// NextSeq is the sequence number the hub expects next (1 for a new
	// device, last+1 for a device that re-enrolls the same AK).
	NextSeq uint64 `cbor:"4,keyasint,omitempty"`
	// QuotePrev is the digest of the last quote the hub accepted, for
	// re-enrollment after the agent lost its state.
	QuotePrev []byte `cbor:"5,keyasint,omitempty"`
	// IMACount is the number of IMA entries of the current boot the hub has
	// already verified.
	IMACount uint64 `cbor:"6,keyasint,omitempty"`
	BootID   string `cbor:"7,keyasint,omitempty"`
}

// Evidence is one outbox record. A quoted record carries Claims (the
// encoded claims.Claims whose SHA-256 is the quote's qualifying data), the
// quote and its PCR values. An IMA-only record (Claims empty) carries a
// chunk of a delta too large for one message; the next quoted record covers
// it.
type Evidence struct {
	V   int    `cbor:"0,keyasint"`
	Seq uint64 `cbor:"1,keyasint"`
	// Claims is the encoded claims set (see package claims).
	Claims    []byte `cbor:"2,keyasint,omitempty"`
	Attest    []byte `cbor:"3,keyasint,omitempty"` // TPMS_ATTEST
	Signature []byte `cbor:"4,keyasint,omitempty"` // TPMT_SIGNATURE
	// PCRs are the quoted PCR values: bank (TPM_ALG_ID) → index → value.
	PCRs map[uint16]map[int][]byte `cbor:"5,keyasint,omitempty"`
	// IMAStart is the index, in the current boot's log, of the first entry
	// in IMA.
	IMAStart uint64 `cbor:"6,keyasint"`
	// IMA holds entries in binary_runtime_measurements format.
	IMA []byte `cbor:"7,keyasint,omitempty"`
	// EventLog is the firmware event log, sent with the first quoted record
	// of a boot.
	EventLog []byte `cbor:"8,keyasint,omitempty"`
	// Thinned is how many heartbeat records the outbox dropped, while
	// offline and over its bound, between the previous record and this one.
	Thinned uint64 `cbor:"9,keyasint,omitempty"`
	// Time is the device's clock (Unix seconds) when the record was made:
	// informational; the TPM clock is what orders records.
	Time int64 `cbor:"10,keyasint,omitempty"`
}

// Quoted reports whether the record carries a quote.
func (e *Evidence) Quoted() bool { return len(e.Attest) > 0 }

// Ack acknowledges one evidence record: the hub has durably processed it
// (verified it or recorded why not) and the device may delete it and every
// earlier record from its outbox.
type Ack struct {
	V   int    `cbor:"0,keyasint"`
	Seq uint64 `cbor:"1,keyasint"`
	// Nonce is the next challenge; the device uses the newest it has.
	Nonce []byte `cbor:"2,keyasint,omitempty"`
	// State is the device's state after this record (TRUSTED, UNTRUSTED…).
	State string `cbor:"3,keyasint,omitempty"`
	// Rejected is set when the record was refused; Reason says why.
	Rejected bool   `cbor:"4,keyasint,omitempty"`
	Reason   string `cbor:"5,keyasint,omitempty"`
	// Resync asks the device to start a new chain: re-read the log from
	// IMAOffset and continue from NextSeq with QuotePrev.
	Resync    bool   `cbor:"6,keyasint,omitempty"`
	NextSeq   uint64 `cbor:"7,keyasint,omitempty"`
	QuotePrev []byte `cbor:"8,keyasint,omitempty"`
	IMAOffset uint64 `cbor:"9,keyasint,omitempty"`
}

// Command is an instruction from the hub (a revocation action, say).
type Command struct {
	V      int    `cbor:"0,keyasint"`
	Action string `cbor:"1,keyasint"` // "revoke", "resync", "quote"
	Reason string `cbor:"2,keyasint,omitempty"`
}

// TokenRequest asks the hub for an attestation-result token for the device
// itself.
type TokenRequest struct {
	V        int    `cbor:"0,keyasint"`
	Nonce    []byte `cbor:"1,keyasint,omitempty"`
	Audience string `cbor:"2,keyasint,omitempty"`
}

// TokenResponse carries the token (or why none was issued).
type TokenResponse struct {
	V      int    `cbor:"0,keyasint"`
	Token  string `cbor:"1,keyasint,omitempty"`
	Reason string `cbor:"2,keyasint,omitempty"`
}

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	if encMode, err = cbor.CoreDetEncOptions().EncMode(); err != nil {
		panic(err)
	}
	decMode, err = cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:   6,
		MaxMapPairs:       256,
		MaxArrayElements:  16,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// versioned is every message type: each carries the protocol version at
// key 0.
type versioned interface{ version() *int }

func (m *Enroll) version() *int        { return &m.V }
func (m *Challenge) version() *int     { return &m.V }
func (m *Activate) version() *int      { return &m.V }
func (m *Enrolled) version() *int      { return &m.V }
func (m *Evidence) version() *int      { return &m.V }
func (m *Ack) version() *int           { return &m.V }
func (m *Command) version() *int       { return &m.V }
func (m *TokenRequest) version() *int  { return &m.V }
func (m *TokenResponse) version() *int { return &m.V }

// Marshal encodes a message, stamping the version, and refuses results
// larger than MaxMessage.
func Marshal(msg any) ([]byte, error) {
	m, ok := msg.(versioned)
	if !ok {
		return nil, fmt.Errorf("protocol: cannot marshal %T", msg)
	}
	*m.version() = Version
	b, err := encMode.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("protocol: encode %T: %w", msg, err)
	}
	if len(b) > MaxMessage {
		return nil, fmt.Errorf("protocol: %T is %d bytes, over the %d-byte bound", msg, len(b), MaxMessage)
	}
	return b, nil
}

// ErrTooLarge is returned for a message over MaxMessage.
var ErrTooLarge = errors.New("protocol: message over the size bound")

// Unmarshal decodes data into msg (a pointer to one of the message types),
// refusing oversize input before decoding and any version but Version after.
func Unmarshal(data []byte, msg any) error {
	if len(data) > MaxMessage {
		return fmt.Errorf("%w: %d bytes", ErrTooLarge, len(data))
	}
	m, ok := msg.(versioned)
	if !ok {
		return fmt.Errorf("protocol: cannot unmarshal into %T", msg)
	}
	if err := decMode.Unmarshal(data, msg); err != nil {
		return fmt.Errorf("protocol: decode %T: %w", msg, err)
	}
	if e, ok := msg.(*Evidence); ok && len(e.IMA) > MaxIMAChunk {
		return fmt.Errorf("protocol: evidence IMA chunk %d bytes over %d", len(e.IMA), MaxIMAChunk)
	}
	if v := *m.version(); v != Version {
		return fmt.Errorf("protocol: %T version %d, want %d", msg, v, Version)
	}
	return nil
}
