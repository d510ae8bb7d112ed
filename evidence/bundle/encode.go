package bundle

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/cmw"
	"github.com/veraison/go-cose"

	"github.com/ratatouille/rat/evidence/protocol"
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
// then policies, records and verdicts in time order, then Close. It holds
// one element at a time.
type Encoder struct {
	w      io.Writer
	h      hash.Hash
	sum    Summary
	signer cose.Signer
	closed bool
	err    error
}

// EncodeOption configures an Encoder.
type EncodeOption func(*Encoder)

// WithSigner makes Close sign the summary with the hub's key. The
// signature is useful (it says which hub exported the bundle) but nothing
// an auditor checks depends on it.
func WithSigner(s cose.Signer) EncodeOption { return func(e *Encoder) { e.signer = s } }

// NewEncoder writes h as the bundle's first element.
func NewEncoder(w io.Writer, h *Header, opts ...EncodeOption) (*Encoder, error) {
	e := &Encoder{w: w, h: sha256.New()}
	for _, o := range opts {
		o(e)
	}
	c, err := headerCMW(h)
	if err != nil {
		return nil, err
	}
	if err := e.writeCMW(c, MaxHeader); err != nil {
		return nil, err
	}
	return e, nil
}

func monad(mediaType string, value []byte) (*cmw.CMW, error) {
	c, err := cmw.NewMonad(mediaType, value)
	if err != nil {
		return nil, fmt.Errorf("bundle: %s item: %w", mediaType, err)
	}
	return c, nil
}

type items struct {
	c   *cmw.CMW
	err error
}

func (it *items) add(key, mediaType string, value []byte) {
	if it.err != nil || value == nil {
		return
	}
	m, err := monad(mediaType, value)
	if err == nil {
		err = it.c.AddCollectionItem(key, m)
	}
	it.err = err
}

func headerCMW(h *Header) (*cmw.CMW, error) {
	if len(h.EKPublic) == 0 || len(h.AKPublic) == 0 {
		return nil, errors.New("bundle: header needs the EK and AK public areas")
	}
	tok, err := encMode.Marshal(&h.Token)
	if err != nil {
		return nil, fmt.Errorf("bundle: encode EAT: %w", err)
	}
	c, err := cmw.NewCollection(TypeBundle)
	if err != nil {
		return nil, fmt.Errorf("bundle: header collection: %w", err)
	}
	it := &items{c: c}
	it.add("eat", MediaEAT, tok)
	it.add("ek", MediaTPMPublic, h.EKPublic)
	if len(h.EKCerts) > 0 {
		chain, err := cmw.NewCollection(TypeBundle + "/ek-certs")
		if err != nil {
			return nil, fmt.Errorf("bundle: ek-certs collection: %w", err)
		}
		ci := &items{c: chain}
		for i, der := range h.EKCerts {
			ci.add(strconv.Itoa(i), MediaCert, der)
		}
		if ci.err != nil {
			return nil, ci.err
		}
		if it.err == nil {
			it.err = c.AddCollectionItem("ek-certs", chain)
		}
	}
	it.add("iak-cert", MediaCert, h.IAKCert)
	it.add("idevid-cert", MediaCert, h.IDevIDCert)
	it.add("ak", MediaTPMPublic, h.AKPublic)
	it.add("ak-binding", MediaCOSESign1, h.Binding)
	it.add("hub-key", MediaSPKI, h.HubKey)
	it.add("trusted-root", MediaTrustedRoot, h.TrustedRoot)
	if it.err != nil {
		return nil, it.err
	}
	return c, nil
}

func (e *Encoder) writeCMW(c *cmw.CMW, max int) error {
	b, err := c.MarshalCBOR()
	if err != nil {
		return fmt.Errorf("bundle: encode element: %w", err)
	}
	return e.writeRaw(b, max)
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
	meta, err := encMode.Marshal(&inForce{Name: p.Name, Since: p.Since, FromSeq: p.FromSeq})
	if err != nil {
		return fmt.Errorf("bundle: encode policy metadata: %w", err)
	}
	c, err := cmw.NewCollection(TypePolicy)
	if err != nil {
		return fmt.Errorf("bundle: policy collection: %w", err)
	}
	it := &items{c: c}
	it.add("in-force", MediaInForce, meta)
	it.add("policy", MediaRuntimePolicy, p.Document)
	it.add("sigstore-bundle", MediaSigstoreBundle, p.SigstoreBundle)
	if it.err != nil {
		return it.err
	}
	if err := e.writeCMW(c, MaxPolicy); err != nil {
		return err
	}
	e.sum.Policies++
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
// refuse anything the decoder would refuse.
func (e *Encoder) WriteEncodedRecord(b []byte) error {
	var r protocol.Evidence
	if err := protocol.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("bundle: record: %w", err)
	}
	m, err := monad(MediaRecord, b)
	if err != nil {
		return err
	}
	if err := e.writeCMW(m, MaxRecord); err != nil {
		return err
	}
	e.sum.Records++
	if r.Quoted() {
		e.sum.Quotes++
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
	if err := e.writeCMW(m, MaxVerdict); err != nil {
		return err
	}
	e.sum.Verdicts++
	return nil
}

// Close writes the end element (summary and, with WithSigner, the hub's
// COSE_Sign1 over it). A bundle without its end element does not decode.
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
	c, err := cmw.NewCollection(TypeEnd)
	if err != nil {
		return fmt.Errorf("bundle: end collection: %w", err)
	}
	it := &items{c: c}
	it.add("summary", MediaSummary, sb)
	if e.signer != nil {
		sig, err := sign(e.signer, MediaSummary, sb)
		if err != nil {
			return fmt.Errorf("bundle: sign summary: %w", err)
		}
		it.add("signature", MediaCOSESign1, sig)
	}
	if it.err != nil {
		return it.err
	}
	b, err := c.MarshalCBOR()
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
