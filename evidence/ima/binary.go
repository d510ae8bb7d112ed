package ima

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Bounds for one binary-log entry; anything larger is refused rather than
// allocated.
const (
	maxTemplateName = 255
	maxTemplateData = 64 << 10
)

// ParseBinary reads a binary_runtime_measurements log (the host's byte
// order, little-endian on every platform we support): for each entry
// u32 pcr, [20]byte template hash, u32 name length, name, u32 data
// length, data. Template fields are decoded for the templates ParseASCII
// knows; TemplateData is kept as the kernel wrote it.
func ParseBinary(r io.Reader) ([]Entry, error) {
	// Every caller hands a bytes.Reader; buffering it again only copies.
	var br io.Reader
	var out []Entry
	switch r := r.(type) {
	case *bytes.Reader:
		br = r
		out = make([]Entry, 0, countBinary(r))
	case *bufio.Reader:
		br = r
	default:
		br = bufio.NewReader(r)
	}
	var off int64
	// Scratch for the fixed-size reads, outside the loop: what is handed
	// to an io.Reader escapes, and would be allocated once per entry.
	var name [maxTemplateName]byte
	var hdr [24]byte
	for i := 0; ; i++ {
		n, err := io.ReadFull(br, hdr[:])
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("ima: binary log entry %d at offset %d: truncated header (%d bytes): %w", i, off, n, err)
		}
		// The length reads below reuse hdr[:4]; hdr[4:] (the template
		// hash) is kept until it is copied.
		pcr := binary.LittleEndian.Uint32(hdr[:4])
		nl, err := readLen(br, hdr[:4], maxTemplateName)
		if err == nil {
			err = readBody(br, name[:nl])
		}
		if err != nil {
			return out, fmt.Errorf("ima: binary log entry %d at offset %d: template name: %w", i, off, err)
		}
		dl, err := readLen(br, hdr[:4], maxTemplateData)
		// One allocation holds the template hash and the template data.
		var buf []byte
		if err == nil {
			buf = make([]byte, 20+dl)
			err = readBody(br, buf[20:])
			copy(buf, hdr[4:24])
		}
		if err != nil {
			return out, fmt.Errorf("ima: binary log entry %d at offset %d: template data: %w", i, off, err)
		}
		e := Entry{PCR: pcr, TemplateHash: buf[:20:20], TemplateName: templateName(name[:nl]), TemplateData: buf[20:]}
		if err := e.decodeTemplateData(); err != nil {
			return out, fmt.Errorf("ima: binary log entry %d at offset %d (%s): %w", i, off, e.TemplateName, err)
		}
		off += int64(24 + 4 + nl + 4 + dl)
		out = append(out, e)
	}
}

// countBinary counts the entries from r's position on by their length
// fields, without reading or checking their contents, so that ParseBinary
// allocates its result once. It stops at anything malformed (ParseBinary
// then reports it) and leaves r's position as it was.
func countBinary(r *bytes.Reader) int {
	var l [4]byte
	start := r.Size() - int64(r.Len())
	n := 0
	for off := start; off < r.Size(); n++ {
		if _, err := r.ReadAt(l[:], off+24); err != nil {
			break
		}
		nl := int64(binary.LittleEndian.Uint32(l[:]))
		if nl > maxTemplateName {
			break
		}
		if _, err := r.ReadAt(l[:], off+28+nl); err != nil {
			break
		}
		dl := int64(binary.LittleEndian.Uint32(l[:]))
		if dl > maxTemplateData {
			break
		}
		off += 32 + nl + dl
	}
	return n
}

// templateName returns the known templates' names without allocating.
func templateName(b []byte) string {
	for _, n := range [...]string{"ima-ng", "ima-sig", "ima-buf", "ima", "ima-ngv2", "ima-sigv2"} {
		if string(b) == n {
			return n
		}
	}
	return string(b)
}

// algName returns the common digest algorithms' names without allocating.
func algName(b []byte) string {
	for _, n := range [...]string{"sha256", "sha1", "sha384", "sha512", "sm3_256", "sha224"} {
		if string(b) == n {
			return n
		}
	}
	return string(b)
}

// readLen reads a little-endian u32 length into l (4 bytes of scratch)
// and refuses one over max.
func readLen(r io.Reader, l []byte, max int) (int, error) {
	if _, err := io.ReadFull(r, l); err != nil {
		return 0, fmt.Errorf("length: %w", truncated(err))
	}
	n := binary.LittleEndian.Uint32(l)
	if n > uint32(max) {
		return 0, fmt.Errorf("length %d exceeds %d", n, max)
	}
	return int(n), nil
}

// readBody fills b, the bytes a length announced.
func readBody(r io.Reader, b []byte) error {
	if _, err := io.ReadFull(r, b); err != nil {
		return fmt.Errorf("%d bytes: %w", len(b), truncated(err))
	}
	return nil
}

func truncated(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// decodeTemplateData fills the parsed fields from TemplateData.
func (e *Entry) decodeTemplateData() error {
	d := e.TemplateData
	if e.TemplateName == "ima" {
		if len(d) < 20 {
			return fmt.Errorf("legacy ima data: %d bytes, want at least 20", len(d))
		}
		e.DigestAlg, e.Digest = "sha1", d[:20]
		name := d[20:]
		for i, c := range name {
			if c == 0 {
				name = name[:i]
				break
			}
		}
		e.Path = string(name)
		return nil
	}
	// The known templates have at most three fields; more are counted
	// (and must be well formed) but not kept.
	var fields [3][]byte
	nf := 0
	for len(d) > 0 {
		if len(d) < 4 {
			return fmt.Errorf("field %d: truncated length", nf)
		}
		n := binary.LittleEndian.Uint32(d[:4])
		if uint64(n) > uint64(len(d)-4) {
			return fmt.Errorf("field %d: length %d exceeds the %d bytes left", nf, n, len(d)-4)
		}
		if nf < len(fields) {
			fields[nf] = d[4 : 4+n]
		}
		nf++
		d = d[4+n:]
	}
	var want int
	switch e.TemplateName {
	case "ima-ng", "ima-ngv2":
		want = 2
	case "ima-sig", "ima-sigv2", "ima-buf":
		want = 3
	default:
		// A custom template: keep the raw data, parse nothing.
		return nil
	}
	if nf < want {
		return fmt.Errorf("%d fields, want %d", nf, want)
	}
	alg, dig, ok := cutByte(fields[0], 0)
	if !ok || len(alg) < 2 || alg[len(alg)-1] != ':' {
		return fmt.Errorf("d-ng field has no \"alg:\\0\" prefix")
	}
	e.DigestAlg, e.Digest = algName(alg[:len(alg)-1]), dig
	name := fields[1]
	if len(name) > 0 && name[len(name)-1] == 0 {
		name = name[:len(name)-1]
	}
	e.Path = string(name)
	switch e.TemplateName {
	case "ima-sig", "ima-sigv2":
		e.Signature = fields[2]
	case "ima-buf":
		e.Buf = fields[2]
	}
	return nil
}

func cutByte(b []byte, sep byte) (before, after []byte, ok bool) {
	for i, c := range b {
		if c == sep {
			return b[:i], b[i+1:], true
		}
	}
	return b, nil, false
}

// MarshalBinary writes entries in the binary_runtime_measurements format
// (for handing a log to tools such as evmctl).
func MarshalBinary(entries []Entry) []byte {
	var out []byte
	for _, e := range entries {
		out = binary.LittleEndian.AppendUint32(out, e.PCR)
		var th [20]byte
		copy(th[:], e.TemplateHash)
		out = append(out, th[:]...)
		out = binary.LittleEndian.AppendUint32(out, uint32(len(e.TemplateName)))
		out = append(out, e.TemplateName...)
		out = binary.LittleEndian.AppendUint32(out, uint32(len(e.TemplateData)))
		out = append(out, e.TemplateData...)
	}
	return out
}

// Parse reads a measurement list in either form, telling them apart by
// the first bytes: the ascii form starts with a decimal PCR index and a
// space, the binary form with a little-endian u32 (so a zero byte within
// its first four).
func Parse(r io.Reader) ([]Entry, error) {
	br := bufio.NewReader(r)
	head, _ := br.Peek(4)
	for _, c := range head {
		if c == 0 {
			return ParseBinary(br)
		}
	}
	return ParseASCII(br)
}
