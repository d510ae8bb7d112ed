package eventlog

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"

	// Hashes a log's banks may use.
	_ "crypto/sha1"
	_ "crypto/sha256"
	_ "crypto/sha512"

	"github.com/ratatouille/rat/evidence/failure"
)

// ReplayedPCRs are always present in a replay: the PCRs the PC Client
// profile gives to firmware, option ROMs, the boot loader and Secure Boot
// (0-7) and to the OS loader (8-9). A PCR with no event replays to its
// reset value, so a quote showing anything else there is caught.
const ReplayedPCRs = 10

func hashOf(alg uint16) (crypto.Hash, bool) {
	switch alg {
	case AlgSHA1:
		return crypto.SHA1, true
	case AlgSHA256:
		return crypto.SHA256, true
	case AlgSHA384:
		return crypto.SHA384, true
	case AlgSHA512:
		return crypto.SHA512, true
	}
	return 0, false
}

func (l *Log) hasBank(alg uint16) bool {
	for _, b := range l.Banks {
		if b.Alg == alg {
			return true
		}
	}
	return false
}

// startupLocality is the EV_NO_ACTION event (PC Client profile 10.4.5.3)
// that says from which locality TPM2_Startup ran: an H-CRTM platform
// starts at locality 3 or 4, and PCR 0 then starts at that value instead
// of zero.
var startupLocality = []byte("StartupLocality\x00")

// Replay extends each measured event's digest of bank alg into its PCR,
// from the reset values, and returns PCRs 0-9 plus any other PCR the log
// measures into. EV_NO_ACTION events extend nothing. It fails if the log
// lacks the bank or any measured event lacks a digest in it: a partial
// replay would look like a mismatch for the wrong reason.
func (l *Log) Replay(alg uint16) (map[int][]byte, error) {
	h, ok := hashOf(alg)
	if !ok {
		return nil, fmt.Errorf("eventlog: replay: unsupported bank %s", AlgName(alg))
	}
	if !l.hasBank(alg) {
		return nil, fmt.Errorf("%w: %s (log has %s)", ErrBank, AlgName(alg), l.bankNames())
	}
	pcrs := make(map[int][]byte, ReplayedPCRs)
	for i := 0; i < ReplayedPCRs; i++ {
		pcrs[i] = make([]byte, h.Size())
	}
	pcr0Measured := false
	for i := range l.Events {
		e := &l.Events[i]
		if e.Type == EvNoAction {
			if e.PCR == 0 && len(e.Data) == len(startupLocality)+1 && bytes.HasPrefix(e.Data, startupLocality) {
				if pcr0Measured {
					return nil, fmt.Errorf("eventlog: event %d: StartupLocality after PCR 0 measurements", e.Num)
				}
				pcrs[0] = make([]byte, h.Size())
				pcrs[0][h.Size()-1] = e.Data[len(e.Data)-1]
			}
			continue
		}
		d, ok := e.Digest(alg)
		if !ok {
			return nil, fmt.Errorf("eventlog: event %d (%s, PCR %d) has no %s digest", e.Num, e.Type, e.PCR, AlgName(alg))
		}
		if len(d) != h.Size() {
			return nil, fmt.Errorf("eventlog: event %d: %s digest of %d bytes", e.Num, AlgName(alg), len(d))
		}
		old, ok := pcrs[e.PCR]
		if !ok {
			old = make([]byte, h.Size())
		}
		x := h.New()
		x.Write(old)
		x.Write(d)
		pcrs[e.PCR] = x.Sum(nil)
		if e.PCR == 0 {
			pcr0Measured = true
		}
	}
	return pcrs, nil
}

func (l *Log) bankNames() string {
	var s string
	for i, b := range l.Banks {
		if i > 0 {
			s += ","
		}
		s += AlgName(b.Alg)
	}
	return s
}

// dataBound reports whether the PC Client profile makes an event type's
// digest the hash of its event data. For these types the data is what a
// verifier reads (Secure Boot variables, separators, actions), so a digest
// that is not its data's hash means the data was altered after measuring:
// the replay would still match and the altered data would be believed.
func dataBound(t EventType) bool {
	switch t {
	case EvSeparator, EvEFIVariableDriverConfig, EvEFIVariableAuthority, EvEFIAction:
		return true
	}
	return false
}

// checkBinding returns the first data-bound event of bank alg whose
// digest is not the hash of its data.
func (l *Log) checkBinding(alg uint16, pcr int) (*Event, error) {
	h, ok := hashOf(alg)
	if !ok {
		return nil, fmt.Errorf("eventlog: unsupported bank %s", AlgName(alg))
	}
	for i := range l.Events {
		e := &l.Events[i]
		if !dataBound(e.Type) || (pcr >= 0 && e.PCR != pcr) {
			continue
		}
		d, ok := e.Digest(alg)
		if !ok {
			return e, nil
		}
		x := h.New()
		x.Write(e.Data)
		if !bytes.Equal(x.Sum(nil), d) {
			return e, nil
		}
	}
	return nil, nil
}

// Verify replays log in bank and compares the result with quotedPCRs, the
// PCR values of that bank whose digest a verified quote signed. It returns
// no events when the log is fully backed by the quote:
//   - measured_boot.invalid_event_log (critical): the log cannot be
//     replayed in bank, or the quote covers none of its PCRs;
//   - measured_boot.invalid_pcr (critical), once per PCR: the replay of a
//     quoted PCR differs from the quoted value;
//   - measured_boot.event_data_mismatch (critical): a Secure Boot variable,
//     separator or action event whose data does not hash to its digest;
//   - measured_boot.pcr_not_quoted: the log measures into a PCR the quote
//     leaves out, so those events are not backed by the TPM (warning for
//     PCRs 0-9, info above).
//
// Quoted PCRs the log does not cover (10 for IMA, 11-23) are not checked
// here.
func Verify(log *Log, bank uint16, quotedPCRs map[int][]byte) []failure.Event {
	if log == nil {
		return []failure.Event{{ID: failure.MeasuredBootInvalidLog, Severity: failure.Critical, Context: "no event log"}}
	}
	replay, err := log.Replay(bank)
	if err != nil {
		return []failure.Event{{ID: failure.MeasuredBootInvalidLog, Severity: failure.Critical, Context: err.Error()}}
	}
	var out []failure.Event
	idx := make([]int, 0, len(replay))
	covered := false
	for p := range replay {
		idx = append(idx, p)
		_, ok := quotedPCRs[p]
		covered = covered || ok
	}
	sort.Ints(idx)
	// A quote that covers none of the log's PCRs backs nothing in it:
	// that is not a list of warnings but no evidence at all.
	if !covered {
		return []failure.Event{{ID: failure.MeasuredBootInvalidLog, Severity: failure.Critical,
			Context: fmt.Sprintf("the quote covers none of the event log's PCRs (%s)", AlgName(bank))}}
	}
	for _, p := range idx {
		q, ok := quotedPCRs[p]
		if !ok {
			sev := failure.Info
			if p < ReplayedPCRs {
				sev = failure.Warning
			}
			out = append(out, failure.Event{ID: failure.MeasuredBootPCRNotQuoted, Severity: sev,
				Context: fmt.Sprintf("PCR %d (%s) is in the event log but not in the quote", p, AlgName(bank)),
				Fields:  map[string]string{"pcr": strconv.Itoa(p)}})
			continue
		}
		if !bytes.Equal(q, replay[p]) {
			out = append(out, failure.Event{ID: failure.MeasuredBootInvalidPCR, Severity: failure.Critical,
				Context: fmt.Sprintf("PCR %d (%s): event log replays to %x, quote has %x", p, AlgName(bank), replay[p], q),
				Fields:  map[string]string{"pcr": strconv.Itoa(p), "bank": AlgName(bank), "expected": hex.EncodeToString(replay[p]), "got": hex.EncodeToString(q)}})
		}
	}
	if e, err := log.checkBinding(bank, -1); err != nil {
		out = append(out, failure.Event{ID: failure.MeasuredBootInvalidLog, Severity: failure.Critical, Context: err.Error()})
	} else if e != nil {
		out = append(out, failure.Event{ID: failure.MeasuredBootEventData, Severity: failure.Critical,
			Context: fmt.Sprintf("event %d (%s, PCR %d): data does not hash to its %s digest", e.Num, e.Type, e.PCR, AlgName(bank)),
			Fields:  map[string]string{"event": strconv.Itoa(e.Num), "pcr": strconv.Itoa(e.PCR)}})
	}
	return out
}
