package tpm

import "fmt"

// FlushStale flushes every transient object and loaded session in the TPM.
// Call it right after opening a TPM that has no resource manager — a raw
// /dev/tpm0, or swtpm or the reference simulator over TCP: there an agent
// that was killed leaves its AK and EK loaded, and after a restart or two
// the TPM's few object slots are full and key creation fails with
// TPM_RC_OBJECT_MEMORY. Such a TPM has one user at a time (/dev/tpm0 opens
// exclusively, swtpm serves one connection), so nothing flushed belongs to
// anyone else. Behind /dev/tpmrm0 the kernel flushes a process's handles
// when it exits; do not call it there.
func (t *TPM) FlushStale() error {
	for _, ht := range []uint8{htTransient, htHMACSession, htPolicySession} {
		p := &out{}
		p.u32(capHandles)
		p.u32(uint32(ht) << 24)
		p.u32(64)
		_, r, err := t.run(ccGetCapability, nil, nil, p, 0)
		if err != nil {
			return fmt.Errorf("tpm: list loaded handles: %w", err)
		}
		r.u8() // moreData: a TPM has far fewer than 64 slots
		if c := r.u32(); r.err == nil && c != capHandles {
			return fmt.Errorf("tpm: list loaded handles: capability 0x%x in the response", c)
		}
		n := r.u32()
		if r.err == nil && n > 64 {
			return fmt.Errorf("tpm: list loaded handles: %d handles", n)
		}
		hs := make([]uint32, 0, n)
		for i := uint32(0); i < n && r.err == nil; i++ {
			hs = append(hs, r.u32())
		}
		if err := r.done(); err != nil {
			return fmt.Errorf("tpm: list loaded handles: %w", err)
		}
		for _, h := range hs {
			if byte(h>>24) != ht {
				continue // the TPM lists on past this handle type
			}
			if err := t.flush(h); err != nil {
				return fmt.Errorf("tpm: flush stale handle 0x%08x: %w", h, err)
			}
		}
	}
	return nil
}

// Handle types (TPM_HT) whose handles FlushStale flushes.
const (
	htHMACSession   uint8 = 0x02
	htPolicySession uint8 = 0x03
	htTransient     uint8 = 0x80
)
