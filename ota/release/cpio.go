package release

import (
	"fmt"
	"io"
	"strconv"
)

// cpioEntry is one member of a newc cpio archive, located in place.
type cpioEntry struct {
	Name   string
	Mode   uint32
	Offset int64 // of the data
	Size   int64
	Check  uint32 // "070702" checksum: sum of data bytes
	CRC    bool
}

const cpioHeaderLen = 110

// maxCPIOEntries bounds how many members an .swu may have; a SWUpdate
// image has a handful.
const maxCPIOEntries = 4096

// readCPIO indexes a newc ("070701") or newc-with-checksum ("070702")
// archive, SWUpdate's .swu container, without reading member data.
func readCPIO(r io.ReaderAt, size int64) ([]cpioEntry, error) {
	var out []cpioEntry
	var off int64
	hdr := make([]byte, cpioHeaderLen)
	for {
		if len(out) >= maxCPIOEntries {
			return nil, fmt.Errorf("release: cpio: more than %d entries", maxCPIOEntries)
		}
		if off+cpioHeaderLen > size {
			return nil, fmt.Errorf("release: cpio: truncated before the TRAILER!!! entry")
		}
		if _, err := r.ReadAt(hdr, off); err != nil {
			return nil, fmt.Errorf("release: cpio header at %d: %w", off, err)
		}
		magic := string(hdr[:6])
		if magic != "070701" && magic != "070702" {
			return nil, fmt.Errorf("release: cpio: bad magic %q at %d (want newc 070701/070702)", magic, off)
		}
		field := func(i int) (uint32, error) {
			v, err := strconv.ParseUint(string(hdr[6+8*i:14+8*i]), 16, 32)
			return uint32(v), err
		}
		var f [13]uint32
		for i := range f {
			v, err := field(i)
			if err != nil {
				return nil, fmt.Errorf("release: cpio header at %d: field %d is not hex", off, i)
			}
			f[i] = v
		}
		mode, fileSize, nameSize, check := f[1], int64(f[6]), int64(f[11]), f[12]
		if nameSize == 0 || nameSize > 4096 {
			return nil, fmt.Errorf("release: cpio header at %d: name size %d", off, nameSize)
		}
		nameOff := off + cpioHeaderLen
		dataOff := align4(nameOff + nameSize)
		if dataOff+fileSize > size {
			return nil, fmt.Errorf("release: cpio entry at %d runs past the end", off)
		}
		name := make([]byte, nameSize)
		if _, err := r.ReadAt(name, nameOff); err != nil {
			return nil, fmt.Errorf("release: cpio name at %d: %w", nameOff, err)
		}
		if name[nameSize-1] != 0 {
			return nil, fmt.Errorf("release: cpio name at %d is not NUL-terminated", nameOff)
		}
		n := string(name[:nameSize-1])
		if n == "TRAILER!!!" {
			return out, nil
		}
		out = append(out, cpioEntry{Name: n, Mode: mode, Offset: dataOff, Size: fileSize, Check: check, CRC: magic == "070702"})
		off = align4(dataOff + fileSize)
	}
}

func align4(n int64) int64 { return (n + 3) &^ 3 }
