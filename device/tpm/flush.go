package tpm

import (
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

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
	for _, ht := range []tpm2.TPMHT{tpm2.TPMHTTransient, tpm2.TPMHTHMACSession, tpm2.TPMHTPolicySession} {
		rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: uint32(ht) << 24, PropertyCount: 64}.Execute(t.t)
		if err != nil {
			return fmt.Errorf("tpm: list loaded handles: %w", err)
		}
		hs, err := rsp.CapabilityData.Data.Handles()
		if err != nil {
			return fmt.Errorf("tpm: list loaded handles: %w", err)
		}
		for _, h := range hs.Handle {
			if byte(h>>24) != byte(ht) {
				continue // the TPM lists on past this handle type
			}
			if _, err := (tpm2.FlushContext{FlushHandle: h}).Execute(t.t); err != nil {
				return fmt.Errorf("tpm: flush stale handle 0x%08x: %w", uint32(h), err)
			}
		}
	}
	return nil
}
