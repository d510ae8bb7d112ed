package bundle

import (
	"bytes"
	"errors"
	"fmt"
	"maps"

	"github.com/ratatouille/rat/evidence/protocol"
)

// applyDelta completes a decoded delta record r (MediaRecordDelta: PCR
// values equal to the previous quoted record's left out) from prev, the
// previous quoted record's PCR values. It refuses a delta that has no
// previous quoted record, carries no quote, repeats a value it should
// leave out, or leaves out nothing: one record, one encoding.
//
// The completed record is the one the encoder was given, so protocol.Marshal
// of it gives back the agent's bytes. Its PCR values are no more trusted
// than those of a full record: the quote's signed pcrDigest proves them,
// and a wrong value fails the quote.
func applyDelta(prev map[uint16]map[int][]byte, r *protocol.Evidence) error {
	if !r.Quoted() {
		return errors.New("delta record without a quote")
	}
	if prev == nil {
		return errors.New("delta record without a previous quoted record")
	}
	full, elided, err := completePCRs(prev, r.PCRs, r.Seq)
	if err != nil {
		return err
	}
	if elided == 0 {
		return fmt.Errorf("delta record %d leaves out no PCR value", r.Seq)
	}
	r.PCRs = full
	return nil
}

// completePCRs puts the values of delta (record seq's) over a copy of
// prev's, and counts the values taken from prev. A value of delta equal to
// prev's is refused: it should have been left out.
func completePCRs(prev, delta map[uint16]map[int][]byte, seq uint64) (map[uint16]map[int][]byte, int, error) {
	full := make(map[uint16]map[int][]byte, len(prev))
	elided := 0
	for bank, pm := range prev {
		full[bank] = maps.Clone(pm)
		elided += len(pm)
	}
	for bank, dm := range delta {
		fm := full[bank]
		if fm == nil {
			fm = map[int][]byte{}
			full[bank] = fm
		}
		for idx, v := range dm {
			if pv, ok := fm[idx]; ok {
				if bytes.Equal(pv, v) {
					return nil, 0, fmt.Errorf("record %d repeats PCR %d of bank 0x%04x", seq, idx, bank)
				}
				elided--
			}
			fm[idx] = v
		}
	}
	return full, elided, nil
}
