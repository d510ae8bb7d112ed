package tpm

import (
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

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
	h := tpm2.TPMHandle(index)
	pub, err := tpm2.NVReadPublic{NVIndex: h}.Execute(t.t)
	if err != nil {
		return nil, fmt.Errorf("tpm: NV 0x%08x: %w", index, err)
	}
	np, err := pub.NVPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("tpm: NV 0x%08x public: %w", index, err)
	}
	var out []byte
	for off := uint16(0); off < np.DataSize; {
		n := np.DataSize - off
		if n > maxNVChunk {
			n = maxNVChunk
		}
		rsp, err := tpm2.NVRead{
			AuthHandle: tpm2.AuthHandle{Handle: h, Name: pub.NVName, Auth: tpm2.PasswordAuth(nil)},
			NVIndex:    tpm2.NamedHandle{Handle: h, Name: pub.NVName},
			Size:       n,
			Offset:     off,
		}.Execute(t.t)
		if err != nil {
			return nil, fmt.Errorf("tpm: NV 0x%08x read at %d: %w", index, off, err)
		}
		out = append(out, rsp.Data.Buffer...)
		off += n
	}
	return out, nil
}
