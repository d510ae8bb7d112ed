package ima

import (
	"crypto/sha1"
	"encoding/binary"
	"fmt"
)

// NewNgEntry builds an ima-ng entry exactly as the kernel does for a file
// measured with digest (algorithm alg, e.g. "sha256") at path: template data
// is the d-ng field ("<alg>:\0" + digest) and the n-ng field (path + "\0"),
// each preceded by its little-endian u32 length, and the logged template
// hash is the SHA-1 of the template data. The simulated IMA source uses it
// to extend PCR 10 as the kernel would; tests use it to build logs.
func NewNgEntry(pcr uint32, alg string, digest []byte, path string) (Entry, error) {
	if err := checkAlgName(alg); err != nil {
		return Entry{}, err
	}
	for i := 0; i < len(path); i++ {
		if path[i] == 0 {
			return Entry{}, fmt.Errorf("ima: path %q contains NUL", path)
		}
	}
	d := append([]byte(alg+":\x00"), digest...)
	n := append([]byte(path), 0)
	var td []byte
	td = binary.LittleEndian.AppendUint32(td, uint32(len(d)))
	td = append(td, d...)
	td = binary.LittleEndian.AppendUint32(td, uint32(len(n)))
	td = append(td, n...)
	th := sha1.Sum(td)
	return Entry{
		PCR: pcr, TemplateHash: th[:], TemplateName: "ima-ng", TemplateData: td,
		DigestAlg: alg, Digest: append([]byte(nil), digest...), Path: path,
	}, nil
}

func checkAlgName(alg string) error {
	if alg == "" || len(alg) > 16 {
		return fmt.Errorf("ima: digest algorithm name %q", alg)
	}
	for _, c := range alg {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("ima: digest algorithm name %q", alg)
		}
	}
	return nil
}
