package server

import (
	"errors"
	"fmt"
	"time"

	"github.com/ratatouille/rat/evidence/protocol"
	"github.com/ratatouille/rat/hub/store"
)

// retentionEvery is how often the hub prunes evidence when
// Config.EvidenceRetention is set.
const retentionEvery = time.Hour

// PruneResult says what one retention pass removed: Records, from Devices.
type PruneResult struct {
	Devices, Records int
}

var errStopScan = errors.New("stop")

// PruneEvidence removes, for every device, the evidence records the hub
// stored more than Config.EvidenceRetention before now, oldest first (by
// the store's stamp, not the device's clock, which is the device's word; a
// record stored before stamps goes by its device time).
// What it removes is always a prefix of the device's chain, and whole
// quotes with the IMA chunks that went before them, so what is left still
// exports as an unbroken chain (an audit of it starts where the prefix
// ends, as for any bundle that starts mid-chain). It never removes a record
// of the device's current boot, however old: the boot's measurement list
// from entry 0 is what lets an auditor replay PCR 10 and judge every entry
// of the boot, so a device that runs for longer than the retention keeps
// its whole boot until it reboots. A record with neither time ends the pass
// for its device (it is kept). With no retention set it removes nothing.
func (s *Server) PruneEvidence(now time.Time) (PruneResult, error) {
	var res PruneResult
	if s.cfg.EvidenceRetention <= 0 {
		return res, nil
	}
	cutoff := now.Add(-s.cfg.EvidenceRetention)
	briefs, err := s.briefs()
	if err != nil {
		return res, fmt.Errorf("server: retention: list devices: %w", err)
	}
	var firstErr error
	var cuts []store.EvidenceCut
	for _, b := range briefs {
		before, err := s.pruneCut(b.Key, cutoff)
		if err != nil {
			s.log.Warn("evidence retention", "device", b.Key, "err", err)
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if before > 0 {
			cuts = append(cuts, store.EvidenceCut{Key: b.Key, Before: before})
		}
	}
	n, err := s.st.DeleteEvidence(cuts)
	res.Devices, res.Records = len(cuts), n
	s.Metrics.Pruned.Add(uint64(n))
	if err != nil {
		return res, fmt.Errorf("server: retention: %w", err)
	}
	return res, firstErr
}

// pruneCut is where key's records before cutoff end (PruneEvidence): one
// past the last quoted record that may go, or 0 if none may.
func (s *Server) pruneCut(key string, cutoff time.Time) (uint64, error) {
	// The cached copy, else the stored record; never put into the cache
	// from here (only the device's worker writes it).
	d := s.devs.get(key)
	if d == nil {
		var err error
		if d, err = s.st.Device(key); err != nil {
			return 0, err
		}
	}
	if d.BootStartSeq <= 1 {
		return 0, nil // the current boot holds every record
	}
	var before uint64
	err := s.st.EvidenceStored(key, 0, d.BootStartSeq-1, func(seq uint64, stored time.Time, raw []byte) error {
		if !stored.IsZero() && !stored.Before(cutoff) {
			return errStopScan // kept: the scan ends here, without decoding
		}
		var e protocol.Evidence
		if err := protocol.Unmarshal(raw, &e); err != nil {
			return fmt.Errorf("record %d: %w", seq, err)
		}
		// The hub's own time of the record; the device's clock only for
		// a record stored before the store kept its time.
		at := stored
		if at.IsZero() && e.Time != 0 {
			at = time.Unix(e.Time, 0)
		}
		if at.IsZero() || !at.Before(cutoff) {
			return errStopScan
		}
		if e.Quoted() {
			before = seq + 1
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStopScan) {
		return 0, err
	}
	return before, nil
}

// retentionLoop prunes evidence every retentionEvery, the first time a
// minute after the start (not during it: the hub is busiest reconnecting
// its devices then).
func (s *Server) retentionLoop() {
	defer s.wg.Done()
	wait := time.Minute
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = retentionEvery
		t0 := time.Now()
		res, err := s.PruneEvidence(t0)
		if err != nil {
			s.log.Warn("evidence retention pass incomplete", "err", err)
		}
		if res.Records > 0 {
			s.log.Info("evidence retention", "devices", res.Devices, "records", res.Records,
				"older than", t0.Add(-s.cfg.EvidenceRetention).UTC().Format(time.RFC3339), "took", time.Since(t0).Round(time.Millisecond))
		}
	}
}
