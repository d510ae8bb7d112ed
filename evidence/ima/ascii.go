package ima

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// MaxLineLen bounds one line of an ascii log. Kernel paths are at most
// PATH_MAX (4096); ima-buf data and ima-sig signatures add a few KiB.
const MaxLineLen = 64 << 10

// ParseASCII reads an ascii_runtime_measurements log. It rebuilds each
// entry's TemplateData exactly as the kernel serialised it, so that
// non-SHA-1 banks can be replayed from an ascii log (as Keylime does).
// An error names the line and the field that is wrong.
func ParseASCII(r io.Reader) ([]Entry, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxLineLen)
	var out []Entry
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		e, err := parseASCIILine(line)
		if err != nil {
			return out, fmt.Errorf("ima: ascii log line %d: %w", n, err)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("ima: ascii log after line %d: %w", n, err)
	}
	return out, nil
}

func parseASCIILine(line string) (Entry, error) {
	// PCR template-hash template-name fields... ; the path (n-ng) may hold
	// spaces, so split the fixed columns first.
	f := strings.SplitN(line, " ", 4)
	if len(f) < 4 {
		return Entry{}, fmt.Errorf("want at least 4 columns, have %d", len(f))
	}
	pcr, err := strconv.ParseUint(f[0], 10, 32)
	if err != nil {
		return Entry{}, fmt.Errorf("pcr %q: %w", f[0], err)
	}
	// Kernels log a SHA-1 template hash here; Keylime's tools also accept
	// logs whose template hash is of another bank's size (sm3_256 tests).
	th, err := hex.DecodeString(f[1])
	if err != nil || (len(th) != 20 && len(th) != 32 && len(th) != 48 && len(th) != 64) {
		return Entry{}, fmt.Errorf("template hash %q: not a 20, 32, 48 or 64 byte hex digest", f[1])
	}
	e := Entry{PCR: uint32(pcr), TemplateHash: th, TemplateName: f[2]}
	rest := f[3]
	switch e.TemplateName {
	case "ima":
		// d (sha1 digest, 20 bytes) n (path, fixed 256-byte field in data).
		d, path, ok := strings.Cut(rest, " ")
		if !ok {
			return Entry{}, fmt.Errorf("template ima: want digest and path")
		}
		if e.Digest, err = hex.DecodeString(d); err != nil || len(e.Digest) != 20 {
			return Entry{}, fmt.Errorf("template ima: digest %q: not 20 hex bytes", d)
		}
		e.DigestAlg, e.Path = "sha1", path
	case "ima-ng", "ima-sig", "ima-buf", "ima-ngv2", "ima-sigv2":
		dng, tail, ok := strings.Cut(rest, " ")
		if !ok {
			return Entry{}, fmt.Errorf("template %s: want digest and name", e.TemplateName)
		}
		alg, d, ok := strings.Cut(dng, ":")
		if !ok || alg == "" {
			return Entry{}, fmt.Errorf("template %s: digest %q has no algorithm prefix", e.TemplateName, dng)
		}
		if !validAlgName(alg) {
			return Entry{}, fmt.Errorf("template %s: digest algorithm %q is not a hash algorithm name", e.TemplateName, alg)
		}
		e.DigestAlg = alg
		if e.Digest, err = hex.DecodeString(d); err != nil {
			return Entry{}, fmt.Errorf("template %s: digest %q: %w", e.TemplateName, d, err)
		}
		switch e.TemplateName {
		case "ima-ng", "ima-ngv2":
			e.Path = tail
		case "ima-sig", "ima-sigv2":
			// The signature, when present, is the last column (hex, no spaces).
			e.Path = tail
			if i := strings.LastIndexByte(tail, ' '); i >= 0 {
				if sig, err := hex.DecodeString(tail[i+1:]); err == nil && len(sig) > 0 {
					e.Path, e.Signature = tail[:i], sig
				}
			}
		case "ima-buf":
			i := strings.LastIndexByte(tail, ' ')
			if i < 0 {
				return Entry{}, fmt.Errorf("template ima-buf: want name and buf")
			}
			e.Path = tail[:i]
			if e.Buf, err = hex.DecodeString(tail[i+1:]); err != nil {
				return Entry{}, fmt.Errorf("template ima-buf: buf: %w", err)
			}
		}
	default:
		return Entry{}, fmt.Errorf("unknown template %q", e.TemplateName)
	}
	if strings.IndexByte(e.Path, 0) >= 0 {
		return Entry{}, fmt.Errorf("template %s: name holds a NUL byte", e.TemplateName)
	}
	e.TemplateData = e.buildTemplateData()
	return e, nil
}

// validAlgName accepts the kernel's hash_algo_name spellings (sha1,
// sha256, sm3_256, streebog512, wp512, ...): lowercase letters, digits, '_', '-'.
func validAlgName(s string) bool {
	if len(s) > 32 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// buildTemplateData serialises the template fields as the kernel does:
// for each field a little-endian u32 length, then the field bytes.
func (e Entry) buildTemplateData() []byte {
	var b bytes.Buffer
	field := func(p []byte) {
		var l [4]byte
		binary.LittleEndian.PutUint32(l[:], uint32(len(p)))
		b.Write(l[:])
		b.Write(p)
	}
	switch e.TemplateName {
	case "ima":
		// Legacy: 20-byte digest, then the name in a fixed
		// IMA_EVENT_NAME_LEN_MAX+1 (256) byte field, no length prefixes.
		b.Write(e.Digest)
		name := make([]byte, 256)
		copy(name, e.Path)
		b.Write(name)
		return b.Bytes()
	}
	dng := append([]byte(e.DigestAlg+":\x00"), e.Digest...)
	field(dng)
	field(append([]byte(e.Path), 0))
	switch e.TemplateName {
	case "ima-sig", "ima-sigv2":
		field(e.Signature)
	case "ima-buf":
		field(e.Buf)
	}
	return b.Bytes()
}
