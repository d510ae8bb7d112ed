package imasim

import (
	"crypto"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/ratatouille/rat/device/tpm"
	"github.com/ratatouille/rat/evidence/ima"
)

// Simulator measures files into a log and a TPM.
type Simulator struct {
	mu  sync.Mutex
	tpm *tpm.TPM
	log *os.File
}

// Open starts a simulated boot's measurement list at path (truncating it)
// and logs boot_aggregate, computed from PCRs 0–9 of the sha256 bank as the
// kernel does for ima-ng.
func Open(t *tpm.TPM, path string) (*Simulator, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("imasim: %w", err)
	}
	s := &Simulator{tpm: t, log: f}
	pcrs, err := t.ReadPCRs([]int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("imasim: boot_aggregate: %w", err)
	}
	vals := make([][]byte, 10)
	for i := range vals {
		vals[i] = pcrs[i]
	}
	agg, err := ima.BootAggregate(vals, crypto.SHA256)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("imasim: boot_aggregate: %w", err)
	}
	if err := s.add(agg, "boot_aggregate"); err != nil {
		f.Close()
		return nil, err
	}
	return s, nil
}

// MeasureFile measures the file at path as IMA's exec hook would: the
// SHA-256 of its content, logged under path.
func (s *Simulator) MeasureFile(path string) (ima.Entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return ima.Entry{}, fmt.Errorf("imasim: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return ima.Entry{}, fmt.Errorf("imasim: read %s: %w", path, err)
	}
	return s.measure(h.Sum(nil), path)
}

// Measure logs a measurement of digest (SHA-256) under path.
func (s *Simulator) Measure(digest []byte, path string) (ima.Entry, error) {
	return s.measure(digest, path)
}

func (s *Simulator) measure(digest []byte, path string) (ima.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := ima.NewNgEntry(10, "sha256", digest, path)
	if err != nil {
		return ima.Entry{}, err
	}
	return e, s.write(e)
}

func (s *Simulator) add(digest []byte, path string) error {
	e, err := ima.NewNgEntry(10, "sha256", digest, path)
	if err != nil {
		return err
	}
	return s.write(e)
}

// write logs the entry and then extends the TPM, in the kernel's order
// (ima_add_template_entry adds to the list before ima_pcr_extend), so a
// reader can briefly see an entry the quote does not cover yet; the agent
// handles that race as it must on a real kernel.
func (s *Simulator) write(e ima.Entry) error {
	if _, err := s.log.Write(ima.MarshalBinary([]ima.Entry{e})); err != nil {
		return fmt.Errorf("imasim: append %s: %w", s.log.Name(), err)
	}
	d := sha256.Sum256(e.TemplateData)
	if err := s.tpm.Extend(10, d[:]); err != nil {
		return fmt.Errorf("imasim: %w", err)
	}
	return nil
}

// Close closes the log.
func (s *Simulator) Close() error { return s.log.Close() }
