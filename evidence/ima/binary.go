package ima

import (
	"bufio"
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
	br := bufio.NewReader(r)
	var out []Entry
	var off int64
	for i := 0; ; i++ {
		var hdr [24]byte
		n, err := io.ReadFull(br, hdr[:])
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("ima: binary log entry %d at offset %d: truncated header (%d bytes): %w", i, off, n, err)
		}
		e := Entry{PCR: binary.LittleEndian.Uint32(hdr[:4]), TemplateHash: append([]byte(nil), hdr[4:24]...)}
		name, err := readLV(br, maxTemplateName)
		if err != nil {
			return out, fmt.Errorf("ima: binary log entry %d at offset %d: template name: %w", i, off, err)
		}
		e.TemplateName = string(name)
		data, err := readLV(br, maxTemplateData)
		if err != nil {
			return out, fmt.Errorf("ima: binary log entry %d at offset %d: template data: %w", i, off, err)
		}
		e.TemplateData = data
		if err := e.decodeTemplateData(); err != nil {
			return out, fmt.Errorf("ima: binary log entry %d at offset %d (%s): %w", i, off, e.TemplateName, err)
		}
		off += int64(24 + 4 + len(name) + 4 + len(data))
		out = append(out, e)
	}
}

func readLV(r io.Reader, max int) ([]byte, error) {
	var l [4]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, fmt.Errorf("length: %w", truncated(err))
	}
	n := binary.LittleEndian.Uint32(l[:])
	if n > uint32(max) {
		return nil, fmt.Errorf("length %d exceeds %d", n, max)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("%d bytes: %w", n, truncated(err))
	}
	return b, nil
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
	var fields [][]byte
	for len(d) > 0 {
		if len(d) < 4 {
			return fmt.Errorf("field %d: truncated length", len(fields))
		}
		n := binary.LittleEndian.Uint32(d[:4])
		if uint64(n) > uint64(len(d)-4) {
			return fmt.Errorf("field %d: length %d exceeds the %d bytes left", len(fields), n, len(d)-4)
		}
		fields = append(fields, d[4:4+n])
		d = d[4+n:]
	}
	want := map[string]int{"ima-ng": 2, "ima-ngv2": 2, "ima-sig": 3, "ima-sigv2": 3, "ima-buf": 3}[e.TemplateName]
	if want == 0 {
		// A custom template: keep the raw data, parse nothing.
		return nil
	}
	if len(fields) < want {
		return fmt.Errorf("%d fields, want %d", len(fields), want)
	}
	alg, dig, ok := cutByte(fields[0], 0)
	if !ok || len(alg) < 2 || alg[len(alg)-1] != ':' {
		return fmt.Errorf("d-ng field has no \"alg:\\0\" prefix")
	}
	e.DigestAlg, e.Digest = string(alg[:len(alg)-1]), dig
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
		th := make([]byte, 20)
		copy(th, e.TemplateHash)
		out = append(out, th...)
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
