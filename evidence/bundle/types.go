package bundle

import (
	"time"

	"github.com/ratatouille/rat/evidence/bundle/wire"
)

// The format's types and constants live in package wire (the encoding
// side, which the device agent imports without veraison/cmw and go-cose);
// bundle re-exports them under the same names.

// Collection types (the CMW "__cmwc_t" of each collection element).
const (
	TypeBundle = wire.TypeBundle
	TypePolicy = wire.TypePolicy
	TypeEnd    = wire.TypeEnd
)

// Profile is the EAT profile (RFC 9711 §4.3.2) of the bundle's claims set.
const Profile = wire.Profile

// Media types of CMW items.
const (
	MediaEAT            = wire.MediaEAT
	MediaCert           = wire.MediaCert
	MediaCOSESign1      = wire.MediaCOSESign1
	MediaTrustedRoot    = wire.MediaTrustedRoot
	MediaSigstoreBundle = wire.MediaSigstoreBundle
	MediaRuntimePolicy  = wire.MediaRuntimePolicy
	MediaTPMPublic      = wire.MediaTPMPublic
	MediaSPKI           = wire.MediaSPKI
	MediaRecord         = wire.MediaRecord
	MediaRecordDelta    = wire.MediaRecordDelta
	MediaRecordCompact  = wire.MediaRecordCompact
	MediaInForce        = wire.MediaInForce
	MediaSummary        = wire.MediaSummary
	MediaBinding        = wire.MediaBinding
	MediaVerdict        = wire.MediaVerdict
)

// Element bounds (wire has the reasons).
const (
	MaxHeader  = wire.MaxHeader
	MaxPolicy  = wire.MaxPolicy
	MaxRecord  = wire.MaxRecord
	MaxVerdict = wire.MaxVerdict
	MaxEnd     = wire.MaxEnd
	MaxElement = wire.MaxElement
)

type (
	// Token is the bundle's EAT claims set (wire.Token).
	Token = wire.Token
	// Header is the bundle's first element (wire.Header).
	Header = wire.Header
	// Policy is a runtime policy element (wire.Policy).
	Policy = wire.Policy
	// Verdict is a hub verdict element (wire.Verdict).
	Verdict = wire.Verdict
	// Summary is the end element's summary (wire.Summary).
	Summary = wire.Summary
	inForce = wire.InForce
)

// NewToken fills the fixed claims (wire.NewToken).
func NewToken(ueid []byte, issuer, subject string, iat time.Time) (Token, error) {
	return wire.NewToken(ueid, issuer, subject, iat)
}

// ValidUEID checks a UEID's form (wire.ValidUEID).
func ValidUEID(u []byte) error { return wire.ValidUEID(u) }

// End is the decoded end element.
type End struct {
	Summary Summary
	// SummaryBytes is the encoded summary, the payload Signature signs.
	SummaryBytes []byte
	// Signature is the hub's COSE_Sign1 over SummaryBytes, or nil.
	Signature []byte
}
