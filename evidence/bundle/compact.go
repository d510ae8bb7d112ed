package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sort"

	"github.com/fxamacker/cbor/v2"

	"github.com/ratatouille/rat/evidence/bundle/wire"
	"github.com/ratatouille/rat/evidence/claims"
	"github.com/ratatouille/rat/evidence/ima"
	"github.com/ratatouille/rat/evidence/protocol"
	"github.com/ratatouille/rat/evidence/quote"
)

// Compact records (MediaRecordCompact) leave out of a record what the
// bundle already holds, and the decoder rebuilds it byte for byte:
//
//   - an IMA entry that the policy in force lists (an ima-ng entry into
//     PCR 10 with a sha256 file digest, as the kernel writes it) is the
//     index of its (path, digest) pair in that policy: 3 bytes instead of
//     ≈ 121;
//   - claims equal to what the header (UEID), the record (seq, IMA count)
//     or the previous quote (boot id, release, chain digest, self-issued
//     nonce) determine are left out;
//   - of the TPMS_ATTEST only the clock and what changed since the previous
//     quote are kept: extraData is SHA-256 of the claims, pcrDigest the hash
//     of the PCR values, magic and type are a quote's;
//   - PCR values equal to the previous quote's are left out, as in a delta
//     record.
//
// Nothing is trusted more for it. What is rebuilt is checked as if it had
// been sent whole: a wrong IMA entry fails the PCR 10 replay, a wrong
// claim, clock or PCR value fails the quote's signature. The policy is only
// a dictionary here: which policy judges an entry is the auditor's
// business, and the decoder reads a policy's digests only when a compact
// record first needs them, so an auditor that checks each policy's
// signature as it arrives has done so before.
//
// An encoder writes a record compact only when rebuilding it gives back
// its exact bytes, and each record has one compact encoding: a value equal
// to the one that would be rebuilt, or an entry that could be an index, is
// refused.

// compactRecord is the CBOR of a MediaRecordCompact value: protocol.Evidence
// with claims, attest, PCR values and IMA entries in their compact forms.
type compactRecord struct {
	V         int                       `cbor:"0,keyasint"`
	Seq       uint64                    `cbor:"1,keyasint"`
	Claims    cbor.RawMessage           `cbor:"2,keyasint,omitempty"` // claims residue (a map)
	Attest    cbor.RawMessage           `cbor:"3,keyasint,omitempty"` // attestResidue
	Signature []byte                    `cbor:"4,keyasint,omitempty"`
	PCRs      map[uint16]map[int][]byte `cbor:"5,keyasint,omitempty"` // values not the previous quote's
	IMAStart  uint64                    `cbor:"6,keyasint"`
	IMA       []cbor.RawMessage         `cbor:"7,keyasint,omitempty"` // uint: policy index; bytes: one entry
	EventLog  []byte                    `cbor:"8,keyasint,omitempty"`
	Thinned   uint64                    `cbor:"9,keyasint,omitempty"`
	Time      int64                     `cbor:"10,keyasint,omitempty"`
}

// attestResidue is what a compact record keeps of a TPMS_ATTEST. Absent
// optional fields are the previous quote's; with no previous quote every
// field is present.
type attestResidue struct {
	Clock           uint64         `cbor:"1,keyasint"`
	ResetCount      *uint32        `cbor:"2,keyasint,omitempty"`
	RestartCount    *uint32        `cbor:"3,keyasint,omitempty"`
	Safe            *bool          `cbor:"4,keyasint,omitempty"`
	QualifiedSigner []byte         `cbor:"5,keyasint,omitempty"`
	FirmwareVersion *uint64        `cbor:"6,keyasint,omitempty"`
	Selections      []selectionRes `cbor:"7,keyasint,omitempty"`
}

// selectionRes is one TPMS_PCR_SELECTION: bank, and the bitmap as sent.
type selectionRes struct {
	_    struct{} `cbor:",toarray"`
	Hash uint16
	Bits []byte
}

// cborNull stands, in a claims residue, for a claim that is absent although
// a value could have been derived for it.
var cborNull = []byte{0xf6}

// compactState is what compact records are written relative to. Encoder
// and decoder keep one each and advance it identically after every record,
// whatever form the record had.
type compactState struct {
	ueid []byte // CBOR of the header's UEID
	// doc is the policy in force; dict its digests, read when first needed.
	doc  []byte
	dict *policyDict
	// prev is the previous quoted record of the bundle, or nil.
	prev *quotedState
}

type quotedState struct {
	pcrs   map[uint16]map[int][]byte
	claims map[int64]cbor.RawMessage // nil when its claims did not decode
	attest *quote.Attest             // nil when its attest did not decode
	digest []byte                    // claims.QuoteDigest of its quote
}

func newCompactState(h *Header) (*compactState, error) {
	u, err := encMode.Marshal(h.Token.UEID)
	if err != nil {
		return nil, fmt.Errorf("bundle: encode UEID: %w", err)
	}
	return &compactState{ueid: u}, nil
}

func (s *compactState) policy(doc []byte) { s.doc, s.dict = doc, nil }

// advance makes r, just written or read, the previous record.
func (s *compactState) advance(r *protocol.Evidence) {
	if !r.Quoted() {
		return
	}
	q := &quotedState{pcrs: r.PCRs, digest: claims.QuoteDigest(r.Attest, r.Signature)}
	if m, err := decodeClaimsMap(r.Claims); err == nil {
		q.claims = m
	}
	if a, err := quote.DecodeAttest(r.Attest); err == nil && a.Type == quote.TagAttestQuote {
		q.attest = a
	}
	s.prev = q
}

// policyDict numbers a policy's (path, sha256 digest) pairs: paths in
// byte order, each path's digests in the policy's order, duplicates and
// digests of other lengths skipped.
type policyDict struct {
	pairs []dictPair
	index map[string]uint64
}

type dictPair struct {
	path   string
	digest []byte
}

func dictKey(path string, digest []byte) string { return path + "\x00" + string(digest) }

func (s *compactState) dictionary() (*policyDict, error) {
	if s.dict != nil {
		return s.dict, nil
	}
	d := &policyDict{index: map[string]uint64{}}
	if s.doc != nil {
		var p struct {
			Digests map[string][]string `json:"digests"`
		}
		if err := json.Unmarshal(s.doc, &p); err != nil {
			return nil, fmt.Errorf("policy in force: %v", err)
		}
		paths := make([]string, 0, len(p.Digests))
		for path := range p.Digests {
			if !bytes.ContainsRune([]byte(path), 0) {
				paths = append(paths, path)
			}
		}
		sort.Strings(paths)
		for _, path := range paths {
			for _, h := range p.Digests[path] {
				dg, err := hex.DecodeString(h)
				if err != nil || len(dg) != sha256.Size {
					continue
				}
				k := dictKey(path, dg)
				if _, dup := d.index[k]; dup {
					continue
				}
				d.index[k] = uint64(len(d.pairs))
				d.pairs = append(d.pairs, dictPair{path, dg})
			}
		}
	}
	s.dict = d
	return d, nil
}

// ngEntry is the binary log entry the kernel writes for a file of digest
// (sha256) at path, measured into PCR 10 with the ima-ng template.
func ngEntry(path string, digest []byte) ([]byte, error) {
	e, err := ima.NewNgEntry(10, "sha256", digest, path)
	if err != nil {
		return nil, err
	}
	return ima.MarshalBinary([]ima.Entry{e}), nil
}

// reference returns the dictionary index that stands for the entry raw,
// if it has one.
func (d *policyDict) reference(e *ima.Entry, raw []byte) (uint64, bool) {
	if e.PCR != 10 || e.TemplateName != "ima-ng" || e.DigestAlg != "sha256" {
		return 0, false
	}
	i, ok := d.index[dictKey(e.Path, e.Digest)]
	if !ok {
		return 0, false
	}
	rebuilt, err := ngEntry(e.Path, e.Digest)
	if err != nil || !bytes.Equal(rebuilt, raw) {
		return 0, false
	}
	return i, true
}

var claimsDec cbor.DecMode

func init() {
	var err error
	claimsDec, err = cbor.DecOptions{
		DupMapKey:       cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels: 4,
		MaxMapPairs:     32,
		IndefLength:     cbor.IndefLengthForbidden,
		TagsMd:          cbor.TagsForbidden,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// decodeClaimsMap decodes a claims set as a map of raw values, and only if
// it is in deterministic encoding (so re-encoding the map gives it back).
func decodeClaimsMap(b []byte) (map[int64]cbor.RawMessage, error) {
	if len(b) == 0 || len(b) > claims.MaxSize {
		return nil, fmt.Errorf("claims of %d bytes", len(b))
	}
	var m map[int64]cbor.RawMessage
	if err := claimsDec.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	again, err := encMode.Marshal(m)
	if err != nil || !bytes.Equal(again, b) {
		return nil, errors.New("claims not in deterministic encoding")
	}
	return m, nil
}

// derivedClaims gives, for each claim a compact record may leave out, the
// value the decoder puts back (absent from the map: nothing to derive).
// The self-issued nonce is derived from the completed claims (completeNonce).
func (s *compactState) derivedClaims(seq, imaCount uint64) map[int64][]byte {
	d := map[int64][]byte{claims.KeyUEID: s.ueid}
	d[claims.KeySeq], _ = encMode.Marshal(seq)
	d[claims.KeyIMACount], _ = encMode.Marshal(imaCount)
	if p := s.prev; p != nil {
		d[claims.KeyPrev], _ = encMode.Marshal(p.digest)
		for _, k := range []int64{claims.KeyBootSeed, claims.KeySWVersion} {
			if v, ok := p.claims[k]; ok {
				d[k] = v
			}
		}
	}
	return d
}

// selfNonce is the nonce derivable from completed claims m: the
// self-issued one (claims.SelfNonce), for claims that say they are
// self-issued and have a decodable seq and prev.
func selfNonce(m map[int64]cbor.RawMessage) ([]byte, bool) {
	if !bytes.Equal(m[claims.KeySelfIssued], []byte{0xf5}) {
		return nil, false
	}
	var seq uint64
	if err := cbor.Unmarshal(m[claims.KeySeq], &seq); err != nil {
		return nil, false
	}
	var prev []byte
	if raw, ok := m[claims.KeyPrev]; ok {
		if err := cbor.Unmarshal(raw, &prev); err != nil {
			return nil, false
		}
	}
	n, err := encMode.Marshal(claims.SelfNonce(prev, seq))
	return n, err == nil
}

// compactClaims returns the residue of the claims m: derivable values left
// out, absent derivable claims written as null.
func (s *compactState) compactClaims(m map[int64]cbor.RawMessage, seq, imaCount uint64) map[int64]cbor.RawMessage {
	out := maps.Clone(m)
	for k, v := range s.derivedClaims(seq, imaCount) {
		switch cur, ok := m[k]; {
		case !ok:
			out[k] = cborNull
		case bytes.Equal(cur, v):
			delete(out, k)
		}
	}
	if n, ok := selfNonce(m); ok && bytes.Equal(m[claims.KeyNonce], n) {
		delete(out, claims.KeyNonce)
	}
	return out
}

// expandClaims completes a claims residue; it refuses the residue of any
// other encoder (a derivable value written out, a null for nothing).
func (s *compactState) expandClaims(res map[int64]cbor.RawMessage, seq, imaCount uint64) ([]byte, error) {
	m := maps.Clone(res)
	derived := s.derivedClaims(seq, imaCount)
	for k, v := range res {
		if _, ok := derived[k]; !ok && bytes.Equal(v, cborNull) {
			return nil, fmt.Errorf("claims residue has null for claim %d, which has nothing to derive", k)
		}
	}
	for k, v := range derived {
		cur, ok := res[k]
		switch {
		case !ok:
			m[k] = v
		case bytes.Equal(cur, cborNull):
			delete(m, k)
		case bytes.Equal(cur, v):
			return nil, fmt.Errorf("claims residue repeats derivable claim %d", k)
		}
	}
	if n, ok := selfNonce(m); ok {
		cur, had := m[claims.KeyNonce]
		switch {
		case !had:
			m[claims.KeyNonce] = n
		case bytes.Equal(cur, n):
			return nil, errors.New("claims residue repeats the derivable self-issued nonce")
		}
	}
	b, err := encMode.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("claims: %w", err)
	}
	return b, nil
}

// compactAttest returns the residue of the quote a (whose extraData and
// pcrDigest the caller has checked are derivable), or false when a cannot
// be written compact.
func (s *compactState) compactAttest(a *quote.Attest) (*attestResidue, bool) {
	if a.Magic != quote.GeneratedValue || a.Type != quote.TagAttestQuote || len(a.QualifiedSigner) == 0 || len(a.PCRSelections) == 0 {
		return nil, false
	}
	r := &attestResidue{Clock: a.ClockInfo.Clock}
	var p *quote.Attest
	if s.prev != nil {
		p = s.prev.attest
	}
	c := a.ClockInfo
	if p == nil || c.ResetCount != p.ClockInfo.ResetCount {
		r.ResetCount = &c.ResetCount
	}
	if p == nil || c.RestartCount != p.ClockInfo.RestartCount {
		r.RestartCount = &c.RestartCount
	}
	if p == nil || c.Safe != p.ClockInfo.Safe {
		r.Safe = &c.Safe
	}
	if p == nil || !bytes.Equal(a.QualifiedSigner, p.QualifiedSigner) {
		r.QualifiedSigner = a.QualifiedSigner
	}
	if p == nil || a.FirmwareVersion != p.FirmwareVersion {
		r.FirmwareVersion = &a.FirmwareVersion
	}
	if p == nil || !sameSelections(a.PCRSelections, p.PCRSelections) {
		for _, sel := range a.PCRSelections {
			r.Selections = append(r.Selections, selectionRes{Hash: sel.Hash, Bits: selectionBits(sel)})
		}
	}
	return r, true
}

func selectionBits(s quote.PCRSelection) []byte {
	b := make([]byte, s.Size)
	for _, p := range s.PCRs {
		b[p/8] |= 1 << (p % 8)
	}
	return b
}

func sameSelections(a, b []quote.PCRSelection) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Hash != b[i].Hash || a[i].Size != b[i].Size || !bytes.Equal(selectionBits(a[i]), selectionBits(b[i])) {
			return false
		}
	}
	return true
}

// expandAttest rebuilds the TPMS_ATTEST of a residue for the claims bytes
// cl and the completed PCR values.
func (s *compactState) expandAttest(r *attestResidue, cl []byte, pcrs map[uint16]map[int][]byte) ([]byte, error) {
	a := &quote.Attest{Magic: quote.GeneratedValue, Type: quote.TagAttestQuote, ExtraData: claims.QualifyingData(cl)}
	a.ClockInfo.Clock = r.Clock
	var p *quote.Attest
	if s.prev != nil {
		p = s.prev.attest
	}
	if p == nil && (r.ResetCount == nil || r.RestartCount == nil || r.Safe == nil || r.QualifiedSigner == nil || r.FirmwareVersion == nil || r.Selections == nil) {
		return nil, errors.New("attest residue without a previous quote leaves out a field")
	}
	if p != nil {
		a.ClockInfo.ResetCount, a.ClockInfo.RestartCount, a.ClockInfo.Safe = p.ClockInfo.ResetCount, p.ClockInfo.RestartCount, p.ClockInfo.Safe
		a.QualifiedSigner, a.FirmwareVersion, a.PCRSelections = p.QualifiedSigner, p.FirmwareVersion, p.PCRSelections
	}
	same := errors.New("attest residue repeats a field of the previous quote")
	if r.ResetCount != nil {
		if p != nil && *r.ResetCount == p.ClockInfo.ResetCount {
			return nil, same
		}
		a.ClockInfo.ResetCount = *r.ResetCount
	}
	if r.RestartCount != nil {
		if p != nil && *r.RestartCount == p.ClockInfo.RestartCount {
			return nil, same
		}
		a.ClockInfo.RestartCount = *r.RestartCount
	}
	if r.Safe != nil {
		if p != nil && *r.Safe == p.ClockInfo.Safe {
			return nil, same
		}
		a.ClockInfo.Safe = *r.Safe
	}
	if r.QualifiedSigner != nil {
		if p != nil && bytes.Equal(r.QualifiedSigner, p.QualifiedSigner) || len(r.QualifiedSigner) > 0xffff {
			return nil, same
		}
		a.QualifiedSigner = r.QualifiedSigner
	}
	if r.FirmwareVersion != nil {
		if p != nil && *r.FirmwareVersion == p.FirmwareVersion {
			return nil, same
		}
		a.FirmwareVersion = *r.FirmwareVersion
	}
	if r.Selections != nil {
		if len(r.Selections) > 16 {
			return nil, fmt.Errorf("attest residue: %d PCR selections", len(r.Selections))
		}
		var sels []quote.PCRSelection
		for i, rs := range r.Selections {
			if len(rs.Bits) > 32 {
				return nil, fmt.Errorf("attest residue: selection %d of %d bytes", i, len(rs.Bits))
			}
			sel := quote.PCRSelection{Hash: rs.Hash, Size: uint8(len(rs.Bits))}
			for j, v := range rs.Bits {
				for bit := 0; bit < 8; bit++ {
					if v&(1<<bit) != 0 {
						sel.PCRs = append(sel.PCRs, j*8+bit)
					}
				}
			}
			sels = append(sels, sel)
		}
		if p != nil && sameSelections(sels, p.PCRSelections) {
			return nil, same
		}
		a.PCRSelections = sels
	}
	d, err := pcrDigest(a.PCRSelections, pcrs)
	if err != nil {
		return nil, err
	}
	a.PCRDigest = d
	return a.Marshal(), nil
}

// pcrDigest is the SHA-256 of the selected PCR values in selection order,
// as the TPM computes a quote's pcrDigest with a SHA-256 signing scheme.
func pcrDigest(sels []quote.PCRSelection, pcrs map[uint16]map[int][]byte) ([]byte, error) {
	h := sha256.New()
	for _, s := range sels {
		for _, p := range s.PCRs {
			v, ok := pcrs[s.Hash][p]
			if !ok {
				return nil, fmt.Errorf("PCR %d of bank 0x%04x is selected but has no value", p, s.Hash)
			}
			h.Write(v)
		}
	}
	return h.Sum(nil), nil
}

// compactor is the wire.Compactor of package bundle's Encoder.
type compactor struct{ s *compactState }

func (c *compactor) Policy(doc []byte) { c.s.policy(doc) }

func (c *compactor) Record(r *protocol.Evidence, b []byte) (string, []byte, error) {
	v, err := c.s.compact(r, b)
	c.s.advance(r)
	if err != nil || v == nil {
		return "", nil, err
	}
	return MediaRecordCompact, v, nil
}

// compact returns the compact value of record r (encoded as b), or nil
// when it cannot be written compact and give back b exactly.
func (s *compactState) compact(r *protocol.Evidence, b []byte) ([]byte, error) {
	if again, err := protocol.Marshal(r); err != nil || !bytes.Equal(again, b) {
		return nil, nil
	}
	cr := compactRecord{V: r.V, Seq: r.Seq, Signature: r.Signature, IMAStart: r.IMAStart, EventLog: r.EventLog, Thinned: r.Thinned, Time: r.Time}
	var entries int
	if len(r.IMA) > 0 {
		es, err := ima.ParseBinary(bytes.NewReader(r.IMA))
		if err != nil {
			return nil, nil
		}
		dict, err := s.dictionary()
		if err != nil {
			return nil, nil
		}
		off := 0
		for i := range es {
			raw := ima.MarshalBinary(es[i : i+1])
			if !bytes.HasPrefix(r.IMA[off:], raw) {
				return nil, nil
			}
			off += len(raw)
			var item []byte
			if idx, ok := dict.reference(&es[i], raw); ok {
				item, err = encMode.Marshal(idx)
			} else {
				item, err = encMode.Marshal(raw)
			}
			if err != nil {
				return nil, fmt.Errorf("bundle: compact record %d: %w", r.Seq, err)
			}
			cr.IMA = append(cr.IMA, item)
		}
		if off != len(r.IMA) {
			return nil, nil
		}
		entries = len(es)
	}
	switch {
	case r.Quoted():
		if len(r.Claims) == 0 || len(r.Signature) == 0 {
			return nil, nil
		}
		m, err := decodeClaimsMap(r.Claims)
		if err != nil {
			return nil, nil
		}
		if cr.Claims, err = encMode.Marshal(s.compactClaims(m, r.Seq, r.IMAStart+uint64(entries))); err != nil {
			return nil, fmt.Errorf("bundle: compact record %d: %w", r.Seq, err)
		}
		a, err := quote.DecodeAttest(r.Attest)
		if err != nil || !bytes.Equal(a.ExtraData, claims.QualifyingData(r.Claims)) {
			return nil, nil
		}
		if d, err := pcrDigest(a.PCRSelections, r.PCRs); err != nil || !bytes.Equal(d, a.PCRDigest) {
			return nil, nil
		}
		res, ok := s.compactAttest(a)
		if !ok {
			return nil, nil
		}
		if cr.Attest, err = encMode.Marshal(res); err != nil {
			return nil, fmt.Errorf("bundle: compact record %d: %w", r.Seq, err)
		}
		// PCR values: those not the previous quote's (all without one).
		cr.PCRs = r.PCRs
		if s.prev != nil {
			d, covers, _ := wire.DeltaPCRs(s.prev.pcrs, r.PCRs)
			if !covers {
				return nil, nil
			}
			cr.PCRs = d
		}
	case len(r.Claims) > 0 || len(r.Signature) > 0 || len(r.PCRs) > 0:
		return nil, nil
	}
	v, err := encMode.Marshal(&cr)
	if err != nil {
		return nil, fmt.Errorf("bundle: compact record %d: %w", r.Seq, err)
	}
	// The decoder must give back b: check it with a copy of the state.
	cp := *s
	got, err := cp.expand(v)
	if err != nil {
		return nil, nil
	}
	if again, err := protocol.Marshal(got); err != nil || !bytes.Equal(again, b) {
		return nil, nil
	}
	return v, nil
}

// canonical decodes b into v and refuses b unless it is v's deterministic
// encoding: the parts of a compact record are checked one by one, since
// the record's own check leaves its embedded items as they are.
func canonical(dm cbor.DecMode, b []byte, v any) error {
	if err := dm.Unmarshal(b, v); err != nil {
		return err
	}
	again, err := encMode.Marshal(v)
	if err != nil || !bytes.Equal(again, b) {
		return errors.New("not in deterministic encoding")
	}
	return nil
}

// expand decodes a MediaRecordCompact value into the record it stands for.
// It does not advance the state.
func (s *compactState) expand(v []byte) (*protocol.Evidence, error) {
	var cr compactRecord
	if err := decMode.Unmarshal(v, &cr); err != nil {
		return nil, fmt.Errorf("compact record: %w", err)
	}
	if again, err := encMode.Marshal(&cr); err != nil || !bytes.Equal(again, v) {
		return nil, errors.New("compact record: not in deterministic encoding")
	}
	if cr.V != protocol.Version {
		return nil, fmt.Errorf("compact record %d: version %d, want %d", cr.Seq, cr.V, protocol.Version)
	}
	r := &protocol.Evidence{V: cr.V, Seq: cr.Seq, Signature: cr.Signature, IMAStart: cr.IMAStart, EventLog: cr.EventLog, Thinned: cr.Thinned, Time: cr.Time}
	if len(cr.IMA) > 0 {
		dict, err := s.dictionary()
		if err != nil {
			return nil, fmt.Errorf("compact record %d: %w", cr.Seq, err)
		}
		for i, item := range cr.IMA {
			var raw []byte
			switch item[0] >> 5 {
			case 0: // uint: a dictionary index
				var idx uint64
				if err := canonical(decMode, item, &idx); err != nil {
					return nil, fmt.Errorf("compact record %d: IMA item %d: %w", cr.Seq, i, err)
				}
				if idx >= uint64(len(dict.pairs)) {
					return nil, fmt.Errorf("compact record %d: IMA item %d: index %d, the policy in force lists %d", cr.Seq, i, idx, len(dict.pairs))
				}
				pr := dict.pairs[idx]
				if raw, err = ngEntry(pr.path, pr.digest); err != nil {
					return nil, fmt.Errorf("compact record %d: IMA item %d: %w", cr.Seq, i, err)
				}
			case 2: // bytes: one entry as logged
				if err := canonical(decMode, item, &raw); err != nil {
					return nil, fmt.Errorf("compact record %d: IMA item %d: %w", cr.Seq, i, err)
				}
				es, err := ima.ParseBinary(bytes.NewReader(raw))
				if err != nil || len(es) != 1 {
					return nil, fmt.Errorf("compact record %d: IMA item %d is not one entry", cr.Seq, i)
				}
				if _, ok := dict.reference(&es[0], raw); ok {
					return nil, fmt.Errorf("compact record %d: IMA item %d is listed by the policy and must be its index", cr.Seq, i)
				}
			default:
				return nil, fmt.Errorf("compact record %d: IMA item %d is neither an index nor an entry", cr.Seq, i)
			}
			if len(r.IMA)+len(raw) > protocol.MaxIMAChunk {
				return nil, fmt.Errorf("compact record %d: IMA entries over %d bytes", cr.Seq, protocol.MaxIMAChunk)
			}
			r.IMA = append(r.IMA, raw...)
		}
	}
	if cr.Attest == nil {
		if cr.Claims != nil || cr.Signature != nil || cr.PCRs != nil {
			return nil, fmt.Errorf("compact record %d: claims, signature or PCRs without a quote", cr.Seq)
		}
		return r, nil
	}
	if cr.Claims == nil || cr.Signature == nil {
		return nil, fmt.Errorf("compact record %d: a quote without claims or signature", cr.Seq)
	}
	// PCR values: the previous quote's, then those the record carries.
	r.PCRs = cr.PCRs
	if s.prev != nil {
		full, _, err := completePCRs(s.prev.pcrs, cr.PCRs, cr.Seq)
		if err != nil {
			return nil, fmt.Errorf("compact %w", err)
		}
		r.PCRs = full
	}
	var res map[int64]cbor.RawMessage
	if err := canonical(claimsDec, cr.Claims, &res); err != nil {
		return nil, fmt.Errorf("compact record %d: claims residue: %w", cr.Seq, err)
	}
	cl, err := s.expandClaims(res, cr.Seq, cr.IMAStart+uint64(len(cr.IMA)))
	if err != nil {
		return nil, fmt.Errorf("compact record %d: %w", cr.Seq, err)
	}
	r.Claims = cl
	var ar attestResidue
	if err := canonical(decMode, cr.Attest, &ar); err != nil {
		return nil, fmt.Errorf("compact record %d: attest residue: %w", cr.Seq, err)
	}
	if r.Attest, err = s.expandAttest(&ar, cl, r.PCRs); err != nil {
		return nil, fmt.Errorf("compact record %d: %w", cr.Seq, err)
	}
	return r, nil
}
