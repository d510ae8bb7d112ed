package bundle

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"io"
	"sort"
	"strconv"

	"github.com/veraison/cmw"

	"github.com/ratatouille/rat/evidence/protocol"
)

// ErrFormat wraps every reason a bundle does not decode.
var ErrFormat = errors.New("bundle: not a valid evidence bundle")

func formatErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrFormat, fmt.Sprintf(format, args...))
}

// Decoder reads a bundle element by element. Only the current element is
// in memory.
type Decoder struct {
	r      *bufio.Reader
	h      hash.Hash
	header *Header
	end    *End
	sum    Summary
	offset int64
	total  int64
	index  int
	// prevPCRs are the PCR values of the last quoted record, which the
	// next delta record starts from.
	prevPCRs map[uint16]map[int][]byte
	// compact is what the next compact record is rebuilt from.
	compact *compactState
}

// NewDecoder reads and checks the header element.
func NewDecoder(r io.Reader) (*Decoder, error) {
	d := &Decoder{r: bufio.NewReaderSize(r, 64<<10), h: sha256.New()}
	b, err := d.element(MaxHeader)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, formatErr("empty input")
		}
		return nil, err
	}
	c, err := decodeCMW(b)
	if err != nil {
		return nil, formatErr("header: %v", err)
	}
	h, err := parseHeader(c)
	if err != nil {
		return nil, formatErr("header: %v", err)
	}
	d.header = h
	if d.compact, err = newCompactState(h); err != nil {
		return nil, formatErr("header: %v", err)
	}
	d.h.Write(b)
	d.total = int64(len(b))
	return d, nil
}

// Header is the decoded header.
func (d *Decoder) Header() *Header { return d.header }

// End is the decoded end element, after Next returned io.EOF.
func (d *Decoder) End() *End { return d.end }

// Offset is the byte offset of the element Next returned last; Index its
// position (the header is element 0). Auditors cite them.
func (d *Decoder) Offset() int64 { return d.offset }

// Index is the position of the element Next returned last.
func (d *Decoder) Index() int { return d.index }

func (d *Decoder) element(max int) ([]byte, error) {
	b, err := readElement(d.r, max)
	if err != nil {
		if err == io.EOF {
			return nil, err
		}
		return nil, formatErr("element %d: %v", d.index+1, err)
	}
	return b, nil
}

// Next returns the next element: *Policy, *protocol.Evidence or *Verdict.
// At the end element it checks the summary against what was read and
// returns io.EOF; a bundle that ends without one, or has bytes after it,
// is a format error.
func (d *Decoder) Next() (any, error) {
	if d.end != nil {
		return nil, io.EOF
	}
	start := d.total
	b, err := d.element(MaxElement)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, formatErr("bundle ends without its end element (truncated?)")
		}
		return nil, err
	}
	d.index++
	d.offset = start
	c, err := decodeCMW(b)
	if err != nil {
		return nil, formatErr("element %d at byte %d: %v", d.index, start, err)
	}
	item, err := d.parse(c, len(b))
	if err != nil {
		return nil, formatErr("element %d at byte %d: %v", d.index, start, err)
	}
	if item == nil { // the end element
		if _, err := d.r.Peek(1); err != io.EOF {
			return nil, formatErr("data after the end element")
		}
		return nil, io.EOF
	}
	d.h.Write(b)
	d.total += int64(len(b))
	return item, nil
}

func (d *Decoder) parse(c *cmw.CMW, size int) (any, error) {
	if c.GetKind() == cmw.KindMonad {
		mt, _ := c.GetMonadType()
		v, _ := c.GetMonadValue()
		if mt == MediaRecord || mt == MediaRecordDelta || mt == MediaRecordCompact {
			if size > MaxRecord {
				return nil, fmt.Errorf("record of %d bytes over %d", size, MaxRecord)
			}
			var r protocol.Evidence
			if mt == MediaRecordCompact {
				cr, err := d.compact.expand(v)
				if err != nil {
					return nil, err
				}
				r = *cr
			} else if err := protocol.Unmarshal(v, &r); err != nil {
				return nil, err
			}
			if mt == MediaRecordDelta {
				if err := applyDelta(d.prevPCRs, &r); err != nil {
					return nil, err
				}
			}
			d.sum.Records++
			if r.Quoted() {
				d.sum.Quotes++
				d.prevPCRs = r.PCRs
			}
			d.compact.advance(&r)
			return &r, nil
		}
		if size > MaxVerdict {
			return nil, fmt.Errorf("verdict of %d bytes over %d", size, MaxVerdict)
		}
		d.sum.Verdicts++
		return &Verdict{MediaType: mt, Value: v}, nil
	}
	ct, _ := c.GetCollectionType()
	switch ct {
	case TypePolicy:
		p, err := parsePolicy(c)
		if err != nil {
			return nil, err
		}
		d.sum.Policies++
		d.compact.policy(p.Document)
		return p, nil
	case TypeEnd:
		if size > MaxEnd {
			return nil, fmt.Errorf("end element of %d bytes over %d", size, MaxEnd)
		}
		return nil, d.parseEnd(c)
	case TypeBundle:
		return nil, errors.New("a second header")
	}
	return nil, fmt.Errorf("unknown collection type %q", ct)
}

func (d *Decoder) parseEnd(c *cmw.CMW) error {
	g := getter{c: c}
	sb := g.need("summary", MediaSummary)
	sig := g.opt("signature", MediaCOSESign1)
	if err := g.done(); err != nil {
		return err
	}
	var s Summary
	if err := decMode.Unmarshal(sb, &s); err != nil {
		return fmt.Errorf("summary: %w", err)
	}
	if subtle.ConstantTimeCompare(s.Digest, d.h.Sum(nil)) != 1 {
		return errors.New("summary digest does not match the bundle's bytes (damaged or altered)")
	}
	if s.Records != d.sum.Records || s.Quotes != d.sum.Quotes || s.Policies != d.sum.Policies || s.Verdicts != d.sum.Verdicts {
		return fmt.Errorf("summary counts (%d records, %d quotes, %d policies, %d verdicts) do not match the bundle (%d, %d, %d, %d)",
			s.Records, s.Quotes, s.Policies, s.Verdicts, d.sum.Records, d.sum.Quotes, d.sum.Policies, d.sum.Verdicts)
	}
	d.end = &End{Summary: s, SummaryBytes: sb, Signature: sig}
	return nil
}

// decodeCMW decodes one element with veraison/cmw. The library is not
// hardened against hostile input, so a panic inside it is turned into an
// error: a bundle is untrusted input and must never crash an auditor.
func decodeCMW(b []byte) (c *cmw.CMW, err error) {
	defer func() {
		if r := recover(); r != nil {
			c, err = nil, fmt.Errorf("cmw: malformed (%v)", r)
		}
	}()
	var out cmw.CMW
	if err := out.UnmarshalCBOR(b); err != nil {
		return nil, fmt.Errorf("cmw: %w", err)
	}
	// Re-encoding must give the same bytes: one element, one encoding, so
	// the summary digest and any signature cover exactly what is judged.
	again, err := out.MarshalCBOR()
	if err != nil {
		return nil, fmt.Errorf("cmw: re-encode: %w", err)
	}
	if !bytes.Equal(again, b) {
		return nil, errors.New("cmw: not in deterministic encoding")
	}
	return &out, nil
}

// getter takes typed items out of a collection, remembering the first
// error, and refuses items it was not asked for.
type getter struct {
	c    *cmw.CMW
	seen map[string]bool
	err  error
}

func (g *getter) item(key, mediaType string, required bool) []byte {
	if g.err != nil {
		return nil
	}
	if g.seen == nil {
		g.seen = map[string]bool{}
	}
	g.seen[key] = true
	it, err := g.c.GetCollectionItem(key)
	if err != nil {
		if required {
			g.err = fmt.Errorf("missing %q", key)
		}
		return nil
	}
	if it.GetKind() != cmw.KindMonad {
		g.err = fmt.Errorf("%q is not a record", key)
		return nil
	}
	mt, _ := it.GetMonadType()
	if mt != mediaType {
		g.err = fmt.Errorf("%q has media type %q, want %q", key, mt, mediaType)
		return nil
	}
	v, _ := it.GetMonadValue()
	if len(v) == 0 {
		g.err = fmt.Errorf("%q is empty", key)
	}
	return v
}

func (g *getter) need(key, mt string) []byte { return g.item(key, mt, true) }
func (g *getter) opt(key, mt string) []byte  { return g.item(key, mt, false) }

func (g *getter) sub(key string) *cmw.CMW {
	if g.seen == nil {
		g.seen = map[string]bool{}
	}
	g.seen[key] = true
	it, err := g.c.GetCollectionItem(key)
	if err != nil || g.err != nil {
		return nil
	}
	if it.GetKind() != cmw.KindCollection {
		g.err = fmt.Errorf("%q is not a collection", key)
		return nil
	}
	return it
}

// done refuses unknown items: an auditor must not be shown evidence the
// verifier silently ignored.
func (g *getter) done() error {
	if g.err != nil {
		return g.err
	}
	meta, err := collectionMeta(g.c)
	if err != nil {
		return err
	}
	for _, m := range meta {
		k, ok := m.Key.(string)
		if !ok || !g.seen[k] {
			return fmt.Errorf("unknown item %v", m.Key)
		}
	}
	return nil
}

// collectionMeta lists a collection's items. veraison/cmw v0.2.0 decodes a
// negative integer key (CBOR major type 1) but then panics sorting the
// keys for its metadata ("key with unknown type int64"); a bundle is
// untrusted input, so that panic becomes an error here (FuzzDecode found
// it). Our collections have string keys only; every other key is refused
// by the callers anyway.
func collectionMeta(c *cmw.CMW) (meta []cmw.Meta, err error) {
	defer func() {
		if r := recover(); r != nil {
			meta, err = nil, fmt.Errorf("collection key of a type the CMW library cannot list: %v", r)
		}
	}()
	return c.GetCollectionMeta()
}

func parseHeader(c *cmw.CMW) (*Header, error) {
	if c.GetKind() != cmw.KindCollection {
		return nil, errors.New("first element is not a collection")
	}
	if ct, _ := c.GetCollectionType(); ct != TypeBundle {
		return nil, fmt.Errorf("collection type %q, want %q", ct, TypeBundle)
	}
	g := getter{c: c}
	h := &Header{}
	tok := g.need("eat", MediaEAT)
	h.EKPublic = g.need("ek", MediaTPMPublic)
	h.AKPublic = g.need("ak", MediaTPMPublic)
	h.IAKCert = g.opt("iak-cert", MediaCert)
	h.IDevIDCert = g.opt("idevid-cert", MediaCert)
	h.Binding = g.opt("ak-binding", MediaCOSESign1)
	h.HubKey = g.opt("hub-key", MediaSPKI)
	h.TrustedRoot = g.opt("trusted-root", MediaTrustedRoot)
	if chain := g.sub("ek-certs"); chain != nil {
		cg := getter{c: chain}
		if ct, _ := chain.GetCollectionType(); ct != TypeBundle+"/ek-certs" {
			return nil, fmt.Errorf("ek-certs collection type %q", ct)
		}
		meta, err := collectionMeta(chain)
		if err != nil {
			return nil, err
		}
		keys := make([]int, 0, len(meta))
		for _, m := range meta {
			s, ok := m.Key.(string)
			n, err := strconv.Atoi(s)
			if !ok || err != nil || n < 0 || strconv.Itoa(n) != s {
				return nil, fmt.Errorf("ek-certs key %v is not an index", m.Key)
			}
			keys = append(keys, n)
		}
		sort.Ints(keys)
		for i, n := range keys {
			if n != i {
				return nil, errors.New("ek-certs indexes are not 0..n-1")
			}
			h.EKCerts = append(h.EKCerts, cg.need(strconv.Itoa(n), MediaCert))
		}
		if err := cg.done(); err != nil {
			return nil, fmt.Errorf("ek-certs: %w", err)
		}
	}
	if err := g.done(); err != nil {
		return nil, err
	}
	if err := decMode.Unmarshal(tok, &h.Token); err != nil {
		return nil, fmt.Errorf("eat: %w", err)
	}
	if h.Token.Profile != Profile {
		return nil, fmt.Errorf("eat: profile %q, want %q", h.Token.Profile, Profile)
	}
	if err := ValidUEID(h.Token.UEID); err != nil {
		return nil, fmt.Errorf("eat: ueid: %w", err)
	}
	return h, nil
}

func parsePolicy(c *cmw.CMW) (*Policy, error) {
	g := getter{c: c}
	meta := g.need("in-force", MediaInForce)
	p := &Policy{Document: g.need("policy", MediaRuntimePolicy), SigstoreBundle: g.opt("sigstore-bundle", MediaSigstoreBundle)}
	if err := g.done(); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	var f inForce
	if err := decMode.Unmarshal(meta, &f); err != nil {
		return nil, fmt.Errorf("policy in-force: %w", err)
	}
	p.Name, p.Since, p.FromSeq = f.Name, f.Since, f.FromSeq
	return p, nil
}
