package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ratatouille/rat/evidence/bundle"
	"github.com/ratatouille/rat/evidence/protocol"
	"github.com/ratatouille/rat/hub/store"
	"github.com/ratatouille/rat/hub/verifier"
)

// IngestResult says what an ingest did.
type IngestResult struct {
	Device     string `json:"device"`
	Records    int    `json:"records"`    // records in the bundle
	Accepted   int    `json:"accepted"`   // joined the device's chain
	Duplicates int    `json:"duplicates"` // already held
	Rejected   int    `json:"rejected"`   // refused (reasons in the device's history)
	State      string `json:"state"`
}

// Ingest takes an offline bundle exported from an enrolled device's outbox
// (`rat-agent export`, carried by hand from a device that could not reach
// the hub) and judges its records exactly as if they had arrived over MQTT,
// in bundle order: the same chain, nonce window, quote, IMA and policy
// checks, the same duplicate rule. So nothing an ingest adds could not have
// been sent live, and records the device later republishes are recognised
// as duplicates.
//
// The device must be enrolled with the AK and EK the bundle names: the AK's
// binding to the TPM comes from the hub's own credential activation, never
// from the bundle.
func (s *Server) Ingest(fleet, id string, r io.Reader) (*IngestResult, error) {
	key := verifier.Key(fleet, id)
	d, err := s.st.Device(key)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("server: ingest: device %s is not enrolled (enroll it online first: its AK must be bound by credential activation)", key)
		}
		return nil, err
	}
	dec, err := bundle.NewDecoder(r)
	if err != nil {
		return nil, fmt.Errorf("server: ingest: %w", err)
	}
	h := dec.Header()
	if !bytes.Equal(h.AKPublic, d.AKPublic) || !bytes.Equal(h.EKPublic, d.EKPublic) {
		return nil, fmt.Errorf("server: ingest: the bundle's AK or EK is not the one %s enrolled with", key)
	}
	// Read every record first: a bundle that does not decode to its end
	// (truncated, tampered summary) is refused whole.
	var raws [][]byte
	for {
		it, err := dec.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("server: ingest: %w", err)
		}
		if e, ok := it.(*protocol.Evidence); ok {
			raw, err := protocol.Marshal(e)
			if err != nil {
				return nil, fmt.Errorf("server: ingest: record %d: %w", e.Seq, err)
			}
			raws = append(raws, raw)
		}
	}
	res := &IngestResult{Device: id, Records: len(raws)}
	done := make(chan struct{})
	s.enqueueFunc(id, func() {
		defer close(done)
		for _, raw := range raws {
			var m protocol.Evidence
			_ = protocol.Unmarshal(raw, &m)
			before, _ := s.st.Device(key)
			held, _ := s.st.EvidenceRecord(key, m.Seq)
			s.handle(msg{fleet: fleet, device: id, kind: protocol.KindEvidence, payload: raw})
			after, _ := s.st.Device(key)
			switch {
			case held != nil && bytes.Equal(held, raw):
				res.Duplicates++
			case before != nil && after != nil && after.NextSeq > before.NextSeq:
				res.Accepted++
			default:
				res.Rejected++
			}
		}
	})
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		return nil, errors.New("server: ingest timed out")
	}
	if d, err := s.st.Device(key); err == nil {
		res.State = d.State
		_ = s.st.AppendEvents(key, []store.Event{{Time: time.Now().UTC(), Kind: "ingest",
			Detail: fmt.Sprintf("offline bundle ingested: %d records, %d accepted, %d duplicates, %d rejected", res.Records, res.Accepted, res.Duplicates, res.Rejected)}})
	}
	return res, nil
}
