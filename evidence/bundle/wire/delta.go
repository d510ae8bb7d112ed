package wire

import (
	"bytes"
	"fmt"

	"github.com/ratatouille/rat/evidence/protocol"
)

// PCR values barely change from one quote to the next: PCRs 0-9 hold the
// boot's firmware and boot loader measurements, and only PCR 10 (IMA)
// moves. A delta record (MediaRecordDelta) is a quoted record that leaves
// out every PCR value equal to the previous quoted record's in the same
// bundle: about 350 of a quote's ≈ 850 bytes (PCRs 0-10, sha256 bank).
// The decoder (package bundle) puts them back before anyone sees the
// record; see docs/bundle-format.md.

// DeltaPCRs returns the values of cur that differ from prev; covers says
// whether cur holds every PCR prev holds (a decoder that starts from prev
// cannot leave one out), elided whether any value of cur was left out.
// Delta records (here) and package bundle's compact records share it.
func DeltaPCRs(prev, cur map[uint16]map[int][]byte) (delta map[uint16]map[int][]byte, covers, elided bool) {
	for bank, pm := range prev {
		cm := cur[bank]
		for idx := range pm {
			if _, ok := cm[idx]; !ok {
				return nil, false, false
			}
		}
	}
	for bank, cm := range cur {
		pm := prev[bank]
		for idx, v := range cm {
			if pv, ok := pm[idx]; ok && bytes.Equal(pv, v) {
				elided = true
				continue
			}
			if delta == nil {
				delta = map[uint16]map[int][]byte{}
			}
			if delta[bank] == nil {
				delta[bank] = map[int][]byte{}
			}
			delta[bank][idx] = v
		}
	}
	return delta, true, elided
}

// encodeDelta returns the delta form of the encoded record b (decoded as
// r), or nil when b must be written whole: not quoted, no previous quoted
// record, nothing to leave out, or b not in the protocol's deterministic
// encoding (then the decoder could not give back the same bytes).
func encodeDelta(prev map[uint16]map[int][]byte, r *protocol.Evidence, b []byte) ([]byte, error) {
	if prev == nil || !r.Quoted() {
		return nil, nil
	}
	d, covers, elided := DeltaPCRs(prev, r.PCRs)
	if !covers || !elided {
		return nil, nil
	}
	again, err := protocol.Marshal(r)
	if err != nil || !bytes.Equal(again, b) {
		return nil, nil
	}
	dr := *r
	dr.PCRs = d
	out, err := protocol.Marshal(&dr)
	if err != nil {
		return nil, fmt.Errorf("bundle: delta of record %d: %w", r.Seq, err)
	}
	return out, nil
}
