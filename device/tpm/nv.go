package tpm

import "fmt"

// TCG EK certificate NV indices (TCG EK Credential Profile 2.x), plus the
// high-range index swtpm uses for its ECC P-384 EK certificate.
const (
	NVIndexRSAEKCert     = 0x01c00002
	NVIndexECCEKCert     = 0x01c0000a
	NVIndexECCP384EKCert = 0x01c00016
)

// EKCertificates reads every EK certificate present in NV, keyed by NV
// index (DER bytes exactly as stored; TCG certificates are checked by
// evidence/ekcert, not here).
func (t *TPM) EKCertificates() (map[uint32][]byte, error) {
	out := map[uint32][]byte{}
	for _, idx := range []uint32{NVIndexRSAEKCert, NVIndexECCEKCert, NVIndexECCP384EKCert} {
		b, err := t.readNV(idx)
		if err != nil {
			continue // absent index: not every TPM has every certificate
		}
		out[idx] = b
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("tpm: no EK certificate in NV (0x%08x, 0x%08x, 0x%08x)", NVIndexRSAEKCert, NVIndexECCEKCert, NVIndexECCP384EKCert)
	}
	return out, nil
}

// maxNVChunk is below every TPM's TPM_PT_NV_BUFFER_MAX seen in practice.
const maxNVChunk = 768

func (t *TPM) readNV(index uint32) ([]byte, error) {
	_, r, err := t.run(ccNVReadPublic, []uint32{index}, nil, &out{}, 0)
	if err != nil {
		return nil, fmt.Errorf("tpm: NV 0x%08x: %w", index, err)
	}
	np := &in{b: r.tpm2b(), err: r.err} // TPMS_NV_PUBLIC
	r.tpm2b()                           // nvName
	if err := r.done(); err != nil {
		return nil, fmt.Errorf("tpm: NV 0x%08x public: %w", index, err)
	}
	if got := np.u32(); np.err == nil && got != index {
		return nil, fmt.Errorf("tpm: NV 0x%08x public: names index 0x%08x", index, got)
	}
	np.u16() // nameAlg
	np.u32() // attributes
	np.tpm2b()
	size := np.u16()
	if err := np.done(); err != nil {
		return nil, fmt.Errorf("tpm: NV 0x%08x public: %w", index, err)
	}
	var data []byte
	for off := uint16(0); off < size; {
		n := size - off
		if n > maxNVChunk {
			n = maxNVChunk
		}
		p := &out{}
		p.u16(n)
		p.u16(off)
		_, r, err := t.run(ccNVRead, []uint32{index, index}, []session{password}, p, 0)
		if err != nil {
			return nil, fmt.Errorf("tpm: NV 0x%08x read at %d: %w", index, off, err)
		}
		chunk := r.tpm2b()
		if err := r.done(); err != nil {
			return nil, fmt.Errorf("tpm: NV 0x%08x read at %d: %w", index, off, err)
		}
		if len(chunk) != int(n) {
			return nil, fmt.Errorf("tpm: NV 0x%08x read at %d: %d bytes, asked for %d", index, off, len(chunk), n)
		}
		data = append(data, chunk...)
		off += n
	}
	return data, nil
}
