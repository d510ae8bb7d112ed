package bundle

import (
	"crypto/rand"
	"io"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"

	"github.com/ratatouille/rat/evidence/bundle/wire"
)

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
		MaxNestedLevels:   4,
		MaxMapPairs:       32,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// Encoder writes a bundle element by element: header first (NewEncoder),
// then policies, records and verdicts in time order, then Close
// (wire.Encoder).
type Encoder = wire.Encoder

// EncodeOption configures an Encoder.
type EncodeOption = wire.EncodeOption

// WithSigner makes Close sign the summary with the hub's key. The
// signature is useful (it says which hub exported the bundle) but nothing
// an auditor checks depends on it.
func WithSigner(s cose.Signer) EncodeOption {
	return wire.WithSign(func(contentType string, payload []byte) ([]byte, error) {
		return sign(s, contentType, payload)
	})
}

// WithFullRecords writes every record whole (MediaRecord), for readers
// older than delta records (MediaRecordDelta).
func WithFullRecords() EncodeOption { return wire.WithFullRecords() }

// WithDeltaRecords writes delta records (MediaRecordDelta) where the
// Encoder would write compact ones (MediaRecordCompact), for readers older
// than compact records; the bundle is about five times larger.
func WithDeltaRecords() EncodeOption { return wire.WithCompactor(nil) }

// NewEncoder writes h as the bundle's first element. Records are written
// compact (MediaRecordCompact) wherever that gives back their exact bytes,
// else as delta or whole records; WithDeltaRecords and WithFullRecords
// choose the older forms.
func NewEncoder(w io.Writer, h *Header, opts ...EncodeOption) (*Encoder, error) {
	cs, err := newCompactState(h)
	if err != nil {
		return nil, err
	}
	opts = append([]EncodeOption{wire.WithCompactor(&compactor{cs})}, opts...)
	return wire.NewEncoder(w, h, opts...)
}

// sign makes a COSE_Sign1 with the payload attached and its content type
// in the protected header, so a signature over one kind of statement
// cannot be presented as another.
func sign(s cose.Signer, contentType string, payload []byte) ([]byte, error) {
	h := cose.Headers{Protected: cose.ProtectedHeader{
		cose.HeaderLabelAlgorithm:   s.Algorithm(),
		cose.HeaderLabelContentType: contentType,
	}}
	return cose.Sign1(rand.Reader, s, h, payload, nil)
}
