package wire

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"mime"
	"strconv"

	"github.com/fxamacker/cbor/v2"

	"github.com/ratatouille/rat/evidence/protocol"
)

// cmwcType is the reserved collection key naming a CMW collection's type.
const cmwcType = "__cmwc_t"

var encMode cbor.EncMode

func init() {
	var err error
	if encMode, err = cbor.CoreDetEncOptions().EncMode(); err != nil {
		panic(err)
	}
}

// SignFunc signs payload as a statement of contentType (package bundle
// makes a COSE_Sign1).
type SignFunc func(contentType string, payload []byte) ([]byte, error)

// Encoder writes a bundle element by element: header first (NewEncoder),
// then policies, records and verdicts in time order, then Close. It holds
// one element at a time.
type Encoder struct {
	w      io.Writer
	h      hash.Hash
	sum    Summary
	sign   SignFunc
	closed bool
	err    error
	// full turns delta records off (WithFullRecords); prevPCRs are the PCR
	// values of the last quoted record written.
	full     bool
	prevPCRs map[uint16]map[int][]byte
	compact  Compactor
}

// A Compactor writes records in a form smaller than a delta record that
// needs more than wire holds: package bundle's compact records, which
// rebuild parts of a record from the policy in force and the previous
// quote. The Encoder tells it every policy and record, in order.
type Compactor interface {
	// Policy is called for each policy element written.
	Policy(doc []byte)
	// Record returns the media type and value of the compact element for
	// the encoded record b (decoded as r), or a nil value to have it
	// written as a delta or whole record. Either way the record is then
	// the previous one for the next.
	Record(r *protocol.Evidence, b []byte) (mediaType string, value []byte, err error)
}

// WithCompactor has records written in c's compact form where c can
// (package bundle sets it unless WithFullRecords or WithDeltaRecords).
func WithCompactor(c Compactor) EncodeOption { return func(e *Encoder) { e.compact = c } }

// EncodeOption configures an Encoder.
type EncodeOption func(*Encoder)

// WithSign makes Close sign the summary with sign (package bundle's
// WithSigner passes the hub's COSE signer).
func WithSign(sign SignFunc) EncodeOption { return func(e *Encoder) { e.sign = sign } }

// WithFullRecords writes every record whole (MediaRecord), for readers
// older than delta records (MediaRecordDelta); it turns a Compactor off.
func WithFullRecords() EncodeOption { return func(e *Encoder) { e.full = true } }

// NewEncoder writes h as the bundle's first element.
func NewEncoder(w io.Writer, h *Header, opts ...EncodeOption) (*Encoder, error) {
	e := &Encoder{w: w, h: sha256.New()}
	for _, o := range opts {
		o(e)
	}
	b, err := headerCMW(h)
	if err != nil {
		return nil, err
	}
	if err := e.writeRaw(b, MaxHeader); err != nil {
		return nil, err
	}
	return e, nil
}

// monad encodes a CMW record: the CBOR array [media type, value]. Like
// veraison/cmw it refuses an empty value and a malformed media type.
func monad(mediaType string, value []byte) ([]byte, error) {
	if len(value) == 0 {
		return nil, fmt.Errorf("bundle: %s item: empty value", mediaType)
	}
	if _, _, err := mime.ParseMediaType(mediaType); err != nil {
		return nil, fmt.Errorf("bundle: %s item: bad media type: %w", mediaType, err)
	}
	b, err := encMode.Marshal([]any{mediaType, value})
	if err != nil {
		return nil, fmt.Errorf("bundle: %s item: %w", mediaType, err)
	}
	return b, nil
}

// collection builds a CMW collection: the map of its items and the
// reserved "__cmwc_t" key holding its type (an absolute URI here, always
// one of this package's constants). Core deterministic encoding sorts the
// keys, so insertion order does not matter.
type collection struct {
	m   map[string]cbor.RawMessage
	err error
}

func newCollection(typ string) *collection {
	c := &collection{m: map[string]cbor.RawMessage{}}
	c.m[cmwcType], c.err = encMode.Marshal(typ)
	return c
}

// add adds a monad item; a nil value is an absent optional item.
func (c *collection) add(key, mediaType string, value []byte) {
	if c.err != nil || value == nil {
		return
	}
	c.m[key], c.err = monad(mediaType, value)
}

// sub adds an already encoded collection item.
func (c *collection) sub(key string, b []byte) {
	if c.err == nil {
		c.m[key] = b
	}
}

func (c *collection) encode() ([]byte, error) {
	if c.err != nil {
		return nil, c.err
	}
	b, err := encMode.Marshal(c.m)
	if err != nil {
		return nil, fmt.Errorf("bundle: encode element: %w", err)
	}
	return b, nil
}

func headerCMW(h *Header) ([]byte, error) {
	if len(h.EKPublic) == 0 || len(h.AKPublic) == 0 {
		return nil, errors.New("bundle: header needs the EK and AK public areas")
	}
	tok, err := encMode.Marshal(&h.Token)
	if err != nil {
		return nil, fmt.Errorf("bundle: encode EAT: %w", err)
	}
	c := newCollection(TypeBundle)
	c.add("eat", MediaEAT, tok)
	c.add("ek", MediaTPMPublic, h.EKPublic)
	if len(h.EKCerts) > 0 {
		chain := newCollection(TypeBundle + "/ek-certs")
		for i, der := range h.EKCerts {
			chain.add(strconv.Itoa(i), MediaCert, der)
		}
		b, err := chain.encode()
		if err != nil {
			return nil, err
		}
		c.sub("ek-certs", b)
	}
	c.add("iak-cert", MediaCert, h.IAKCert)
	c.add("idevid-cert", MediaCert, h.IDevIDCert)
	c.add("ak", MediaTPMPublic, h.AKPublic)
	c.add("ak-binding", MediaCOSESign1, h.Binding)
	c.add("hub-key", MediaSPKI, h.HubKey)
	c.add("trusted-root", MediaTrustedRoot, h.TrustedRoot)
	return c.encode()
}

func (e *Encoder) writeRaw(b []byte, max int) error {
	if e.err != nil {
		return e.err
	}
	if e.closed {
		return errors.New("bundle: encoder is closed")
	}
	if len(b) > max {
		return fmt.Errorf("bundle: element of %d bytes over its %d-byte bound", len(b), max)
	}
	e.h.Write(b)
	if _, err := e.w.Write(b); err != nil {
		e.err = fmt.Errorf("bundle: write: %w", err)
		return e.err
	}
	return nil
}

// WritePolicy writes a policy element: p is in force for the records
// written after it.
func (e *Encoder) WritePolicy(p *Policy) error {
	if len(p.Document) == 0 {
		return errors.New("bundle: policy without a document")
	}
	meta, err := encMode.Marshal(&InForce{Name: p.Name, Since: p.Since, FromSeq: p.FromSeq})
	if err != nil {
		return fmt.Errorf("bundle: encode policy metadata: %w", err)
	}
	c := newCollection(TypePolicy)
	c.add("in-force", MediaInForce, meta)
	c.add("policy", MediaRuntimePolicy, p.Document)
	c.add("sigstore-bundle", MediaSigstoreBundle, p.SigstoreBundle)
	b, err := c.encode()
	if err != nil {
		return err
	}
	if err := e.writeRaw(b, MaxPolicy); err != nil {
		return err
	}
	e.sum.Policies++
	if e.compact != nil && !e.full {
		e.compact.Policy(p.Document)
	}
	return nil
}

// WriteRecord writes one evidence record exactly as the protocol encodes
// it (the same bytes the agent sent and the hub stored).
func (e *Encoder) WriteRecord(r *protocol.Evidence) error {
	b, err := protocol.Marshal(r)
	if err != nil {
		return fmt.Errorf("bundle: record %d: %w", r.Seq, err)
	}
	return e.WriteEncodedRecord(b)
}

// WriteEncodedRecord writes an already encoded protocol.Evidence record
// (for a hub that stores the received bytes). It is decoded once to
// refuse anything the decoder would refuse. A quoted record is written as
// a delta of the previous quoted one (MediaRecordDelta) when that leaves
// out PCR values and the decoder can give back b exactly; otherwise whole.
func (e *Encoder) WriteEncodedRecord(b []byte) error {
	var r protocol.Evidence
	if err := protocol.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("bundle: record: %w", err)
	}
	mt, v := MediaRecord, b
	if !e.full && e.compact != nil {
		cmt, cv, err := e.compact.Record(&r, b)
		if err != nil {
			return err
		}
		if cv != nil {
			mt, v = cmt, cv
		}
	}
	if !e.full && mt == MediaRecord {
		d, err := encodeDelta(e.prevPCRs, &r, b)
		if err != nil {
			return err
		}
		if d != nil {
			mt, v = MediaRecordDelta, d
		}
	}
	m, err := monad(mt, v)
	if err != nil {
		return err
	}
	if err := e.writeRaw(m, MaxRecord); err != nil {
		return err
	}
	e.sum.Records++
	if r.Quoted() {
		e.sum.Quotes++
		e.prevPCRs = r.PCRs
	}
	return nil
}

// WriteVerdict writes a hub verdict (an EAR, say) with its media type.
func (e *Encoder) WriteVerdict(v *Verdict) error {
	mt := v.MediaType
	if mt == "" {
		mt = MediaVerdict
	}
	m, err := monad(mt, v.Value)
	if err != nil {
		return err
	}
	if err := e.writeRaw(m, MaxVerdict); err != nil {
		return err
	}
	e.sum.Verdicts++
	return nil
}

// Close writes the end element (summary and, with WithSign, the signature
// over it). A bundle without its end element does not decode.
func (e *Encoder) Close() error {
	if e.err != nil {
		return e.err
	}
	if e.closed {
		return nil
	}
	e.sum.Digest = e.h.Sum(nil)
	sb, err := encMode.Marshal(&e.sum)
	if err != nil {
		return fmt.Errorf("bundle: encode summary: %w", err)
	}
	c := newCollection(TypeEnd)
	c.add("summary", MediaSummary, sb)
	if e.sign != nil {
		sig, err := e.sign(MediaSummary, sb)
		if err != nil {
			return fmt.Errorf("bundle: sign summary: %w", err)
		}
		c.add("signature", MediaCOSESign1, sig)
	}
	b, err := c.encode()
	if err != nil {
		return fmt.Errorf("bundle: encode end element: %w", err)
	}
	if _, err := e.w.Write(b); err != nil {
		e.err = fmt.Errorf("bundle: write: %w", err)
		return e.err
	}
	e.closed = true
	return nil
}
