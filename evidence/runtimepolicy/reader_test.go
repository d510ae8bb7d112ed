package runtimepolicy

import (
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/ratatouille/rat/evidence/ima"
)

// readASCII is a test-only reader of IMA ascii logs, enough for the
// Keylime fixtures (evidence/ima owns the real parser).
func readASCII(data string) ([]ima.Entry, error) {
	var out []ima.Entry
	for n, line := range strings.Split(data, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 5 {
			return nil, fmt.Errorf("line %d: short", n+1)
		}
		pcr, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("line %d: pcr: %w", n+1, err)
		}
		th, err := hex.DecodeString(f[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: template hash: %w", n+1, err)
		}
		e := ima.Entry{PCR: uint32(pcr), TemplateHash: th, TemplateName: f[2]}
		alg, d, ok := strings.Cut(f[3], ":")
		if !ok {
			alg, d = "sha1", f[3]
		}
		e.DigestAlg = alg
		if e.Digest, err = hex.DecodeString(d); err != nil {
			return nil, fmt.Errorf("line %d: digest: %w", n+1, err)
		}
		e.Path = f[4]
		if len(f) > 5 {
			b, err := hex.DecodeString(f[5])
			if err != nil {
				return nil, fmt.Errorf("line %d: last field: %w", n+1, err)
			}
			if e.TemplateName == "ima-buf" {
				e.Buf = b
			} else {
				e.Signature = b
			}
		}
		out = append(out, e)
	}
	return out, nil
}

func mustLog(t testing.TB, path string) []ima.Entry {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	es, err := readASCII(string(b))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return es
}
