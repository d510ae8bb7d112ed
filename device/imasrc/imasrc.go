package imasrc

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/ratatouille/rat/evidence/ima"
)

// Source yields the current boot's IMA measurement list.
type Source interface {
	// Count is the number of entries in the list now; it is cheap (the
	// agent polls it).
	Count() (uint64, error)
	// Read returns the entries from index from to the current end.
	Read(from uint64) ([]ima.Entry, error)
}

// maxEntry bounds one binary entry's name and data fields.
const maxEntry = 1 << 20

// SecurityFS reads the kernel's lists under dir (normally
// /sys/kernel/security/ima).
type SecurityFS struct {
	dir string
	mu  sync.Mutex
	// offsets[i] is the byte offset of entry i in the binary list, learned
	// as the list is read, so a read from i skips the bytes before it
	// without parsing them again.
	offsets []int64
}

// NewSecurityFS reads IMA's lists under dir ("" means
// /sys/kernel/security/ima).
func NewSecurityFS(dir string) *SecurityFS {
	if dir == "" {
		dir = "/sys/kernel/security/ima"
	}
	return &SecurityFS{dir: dir}
}

// Count reads runtime_measurements_count.
func (s *SecurityFS) Count() (uint64, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, "runtime_measurements_count"))
	if err != nil {
		return 0, fmt.Errorf("imasrc: %w", err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("imasrc: runtime_measurements_count %q: %w", b, err)
	}
	return n, nil
}

// Read reads binary_runtime_measurements from entry from on.
func (s *SecurityFS) Read(from uint64) ([]ima.Entry, error) {
	return s.readFile(filepath.Join(s.dir, "binary_runtime_measurements"), from)
}

func (s *SecurityFS) readFile(path string, from uint64) ([]ima.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("imasrc: %w", err)
	}
	defer f.Close()
	// Start from the nearest known offset at or before from. securityfs
	// files support forward seeks (the kernel walks its list).
	idx := uint64(len(s.offsets))
	if idx > from {
		idx = from
	}
	var off int64
	if idx > 0 {
		off = s.offsets[idx-1]
		idx--
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return nil, fmt.Errorf("imasrc: seek %s: %w", path, err)
		}
	}
	br := bufio.NewReaderSize(f, 64<<10)
	// Skip to from, recording offsets.
	for idx < from {
		n, err := skipEntry(br)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("imasrc: %s has %d entries, fewer than offset %d (a new boot?)", path, idx, from)
			}
			return nil, fmt.Errorf("imasrc: %s entry %d: %w", path, idx, err)
		}
		if uint64(len(s.offsets)) == idx {
			s.offsets = append(s.offsets, off)
		}
		off += n
		idx++
	}
	rest, err := io.ReadAll(br)
	if err != nil {
		return nil, fmt.Errorf("imasrc: read %s: %w", path, err)
	}
	// Only whole entries: a simulated writer may be mid-append.
	whole, offs, err := wholeEntries(rest)
	if err != nil {
		return nil, fmt.Errorf("imasrc: %s from entry %d: %w", path, from, err)
	}
	entries, err := ima.ParseBinary(bytes.NewReader(rest[:whole]))
	if err != nil {
		return nil, fmt.Errorf("imasrc: %s from entry %d: %w", path, from, err)
	}
	for i, o := range offs {
		if uint64(len(s.offsets)) == from+uint64(i) {
			s.offsets = append(s.offsets, off+o)
		}
	}
	return entries, nil
}

// skipEntry reads past one binary entry, returning its length.
func skipEntry(r *bufio.Reader) (int64, error) {
	var hdr [28]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, io.EOF
		}
		return 0, err
	}
	n := int64(28)
	for i := 0; i < 2; i++ {
		var l uint32
		if i == 0 {
			l = binary.LittleEndian.Uint32(hdr[24:])
		} else {
			var b [4]byte
			if _, err := io.ReadFull(r, b[:]); err != nil {
				return 0, io.EOF
			}
			l = binary.LittleEndian.Uint32(b[:])
			n += 4
		}
		if l > maxEntry {
			return 0, fmt.Errorf("field of %d bytes", l)
		}
		if _, err := r.Discard(int(l)); err != nil {
			return 0, io.EOF
		}
		n += int64(l)
	}
	return n, nil
}

// wholeEntries returns the length of the longest prefix of b made of whole
// entries, and the offset of each entry in it.
func wholeEntries(b []byte) (int, []int64, error) {
	var offs []int64
	p := 0
	for {
		if len(b)-p < 28 {
			return p, offs, nil
		}
		nl := int(binary.LittleEndian.Uint32(b[p+24:]))
		if nl > maxEntry {
			return 0, nil, fmt.Errorf("template name of %d bytes", nl)
		}
		q := p + 28 + nl
		if len(b)-q < 4 {
			return p, offs, nil
		}
		dl := int(binary.LittleEndian.Uint32(b[q:]))
		if dl > maxEntry {
			return 0, nil, fmt.Errorf("template data of %d bytes", dl)
		}
		q += 4 + dl
		if q > len(b) {
			return p, offs, nil
		}
		offs = append(offs, int64(p))
		p = q
	}
}

// File reads a binary log file that another process appends whole entries
// to (the simulated IMA source). Count parses only the new bytes.
type File struct {
	SecurityFS
	path string
}

// NewFile reads the binary log at path.
func NewFile(path string) *File { return &File{path: path} }

// Count is the number of whole entries in the file.
func (f *File) Count() (uint64, error) {
	// Read from the last known entry: it records offsets as it goes.
	f.mu.Lock()
	known := uint64(len(f.offsets))
	f.mu.Unlock()
	from := known
	if from > 0 {
		from--
	}
	e, err := f.readFile(f.path, from)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, nil
		}
		return 0, err
	}
	return from + uint64(len(e)), nil
}

// Read reads the file from entry from on.
func (f *File) Read(from uint64) ([]ima.Entry, error) { return f.readFile(f.path, from) }
