package wire

import (
	"fmt"
	"time"

	"github.com/ratatouille/rat/evidence/protocol"
)

// Collection types (the CMW "__cmwc_t" of each collection element).
const (
	TypeBundle = "tag:ratatouille.dev,2026:evidence-bundle/v1"
	TypePolicy = "tag:ratatouille.dev,2026:runtime-policy/v1"
	TypeEnd    = "tag:ratatouille.dev,2026:evidence-bundle-end/v1"
)

// Profile is the EAT profile (RFC 9711 §4.3.2) of the bundle's claims set.
const Profile = "tag:ratatouille.dev,2026:eat-profile/bundle/v1"

// Media types of CMW items. Standard types are used where one exists.
const (
	MediaEAT            = "application/eat-ucs+cbor" // RFC 9782: EAT unprotected claims set
	MediaCert           = "application/pkix-cert"    // RFC 2585: one DER certificate
	MediaCOSESign1      = `application/cose; cose-type="cose-sign1"`
	MediaTrustedRoot    = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
	MediaSigstoreBundle = "application/vnd.dev.sigstore.bundle.v0.3+json"
	MediaRuntimePolicy  = "application/vnd.keylime.runtime-policy+json"
	MediaTPMPublic      = "application/vnd.ratatouille.tpmt-public"          // TPMT_PUBLIC bytes
	MediaSPKI           = "application/vnd.ratatouille.spki+der"             // SubjectPublicKeyInfo DER
	MediaRecord         = "application/vnd.ratatouille.evidence-record+cbor" // protocol.Evidence
	// MediaRecordDelta is a quoted protocol.Evidence whose PCR values equal
	// to the previous quoted record's are left out (docs/bundle-format.md).
	MediaRecordDelta = "application/vnd.ratatouille.evidence-record-delta+cbor"
	// MediaRecordCompact is a record with what the bundle already holds
	// left out: IMA entries the policy in force lists, claims and quote
	// fields derivable from the header and the previous quote (package
	// bundle; docs/bundle-format.md).
	MediaRecordCompact = "application/vnd.ratatouille.evidence-record-compact+cbor"
	MediaInForce       = "application/vnd.ratatouille.policy-in-force+cbor"
	MediaSummary       = "application/vnd.ratatouille.bundle-summary+cbor"
	MediaBinding       = "application/vnd.ratatouille.ak-binding+cbor" // COSE content type of a Binding
	MediaVerdict       = "application/vnd.ratatouille.verdict+cbor"
)

// Element bounds. A record is bounded by the protocol's message bound;
// policies (Keylime policies of a full distribution run to megabytes) and
// the header (certificates, trusted root) get their own.
const (
	MaxHeader  = 4 << 20
	MaxPolicy  = 64 << 20
	MaxRecord  = protocol.MaxMessage + 1024
	MaxVerdict = 1 << 20
	MaxEnd     = 64 << 10
	// MaxElement is the largest element of any kind.
	MaxElement = MaxPolicy + 1024
)

// Token is the bundle's EAT claims set (RFC 9711), sent unprotected
// (RFC 9782): it describes the span and the device. Nothing in it is
// trusted on its own: the UEID is recomputed from the EK public key and the
// span from the quotes. Times are NumericDate integers without CBOR tag 1,
// as RFC 8392 §2 requires (veraison/eat's NumericDate adds the tag, so
// Token uses plain integers). The UEID and the profile (a URI, so a CBOR
// text string) are plain types too, encoded exactly as veraison/eat's
// UEID and Profile encode: the device agent exports bundles, and importing
// veraison/eat would pull its SWID/CoSWID dependencies (and, through them,
// testify and yaml) into the device binary. The auditor (root module)
// re-checks both claims with veraison/eat's own types.
type Token struct {
	Issuer  string `cbor:"1,keyasint,omitempty"` // exporting hub, or "device" for rat-agent export
	Subject string `cbor:"2,keyasint,omitempty"` // device id
	IAT     int64  `cbor:"6,keyasint"`           // export time
	UEID    []byte `cbor:"256,keyasint"`
	Profile string `cbor:"265,keyasint"`
	// SpanFrom and SpanTo are the requested span (Unix seconds).
	SpanFrom int64 `cbor:"-70101,keyasint,omitempty"`
	SpanTo   int64 `cbor:"-70102,keyasint,omitempty"`
	// SelfIssued says the device exported its own outbox: no verifier
	// nonce was available, so quotes prove order, not freshness.
	SelfIssued bool `cbor:"-70103,keyasint,omitempty"`
}

// NewToken fills the fixed claims.
func NewToken(ueid []byte, issuer, subject string, iat time.Time) (Token, error) {
	if err := ValidUEID(ueid); err != nil {
		return Token{}, fmt.Errorf("bundle: ueid: %w", err)
	}
	return Token{Issuer: issuer, Subject: subject, IAT: iat.Unix(), UEID: append([]byte(nil), ueid...), Profile: Profile}, nil
}

// ValidUEID checks a UEID's form (RFC 9711 §4.2.1): type 0x01 (RAND) with
// 16, 24 or 32 bytes, type 0x02 (IEEE EUI) with 6 or 8, or type 0x03
// (IMEI) with 14.
func ValidUEID(u []byte) error {
	if len(u) < 2 {
		return fmt.Errorf("%d bytes", len(u))
	}
	n := len(u) - 1
	switch u[0] {
	case 0x01:
		if n == 16 || n == 24 || n == 32 {
			return nil
		}
	case 0x02:
		if n == 6 || n == 8 {
			return nil
		}
	case 0x03:
		if n == 14 {
			return nil
		}
	default:
		return fmt.Errorf("type 0x%02x", u[0])
	}
	return fmt.Errorf("type 0x%02x with %d bytes", u[0], n)
}

// Header is the bundle's first element: who the device is and which key
// signed its quotes.
type Header struct {
	Token Token
	// EKPublic is the EK's TPMT_PUBLIC; the UEID is derived from it.
	EKPublic []byte
	// EKCerts is the EK certificate, then any intermediates (DER).
	EKCerts [][]byte
	// IAKCert and IDevIDCert are the TCG device identity certificates
	// where the device has them.
	IAKCert, IDevIDCert []byte
	// AKPublic is the AK's TPMT_PUBLIC.
	AKPublic []byte
	// Binding is the enrolling hub's COSE_Sign1 over a Binding statement.
	Binding []byte
	// HubKey is the exporting hub's public key (SPKI DER), for Binding and
	// the bundle signature. An auditor pins it; the copy here only says
	// which key to ask about.
	HubKey []byte
	// TrustedRoot is the Sigstore trusted root the hub checked policies
	// against (JSON).
	TrustedRoot []byte
}

// Policy is a runtime policy element: in force for every record after it
// in the bundle until the next policy element.
type Policy struct {
	// Name is the policy's name at the hub (e.g. "Baseline::lab").
	Name string
	// Since is when the hub put it in force (Unix seconds); FromSeq the
	// first record sequence number it was applied to.
	Since   int64
	FromSeq uint64
	// Document is the Keylime runtime policy JSON, byte for byte as signed.
	Document []byte
	// SigstoreBundle is the Sigstore bundle (JSON) over Document, if signed.
	SigstoreBundle []byte
}

// InForce is the CBOR of a policy's MediaInForce item.
type InForce struct {
	Name    string `cbor:"1,keyasint"`
	Since   int64  `cbor:"2,keyasint,omitempty"`
	FromSeq uint64 `cbor:"3,keyasint,omitempty"`
}

// Verdict is a hub verdict element (an EAR or the hub's own record). It is
// the hub's opinion, carried for the auditor to compare, never relied on.
type Verdict struct {
	MediaType string
	Value     []byte
}

// Summary is the end element's summary: counts and the SHA-256 of every
// byte of the bundle before the end element. It detects truncation and
// accidental damage; only the optional signature makes it an attestation
// by the hub, and no verdict depends on that.
type Summary struct {
	Records  uint64 `cbor:"1,keyasint"`
	Quotes   uint64 `cbor:"2,keyasint"`
	Policies uint64 `cbor:"3,keyasint"`
	Verdicts uint64 `cbor:"4,keyasint"`
	Digest   []byte `cbor:"5,keyasint"`
}
