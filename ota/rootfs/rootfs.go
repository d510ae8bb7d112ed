package rootfs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

// Type names an image format.
type Type string

// Image formats Open recognises.
const (
	TypeDir      Type = "dir"
	TypeTar      Type = "tar"
	TypeSquashfs Type = "squashfs"
	TypeExt4     Type = "ext4"
)

// Entry is one file system object of an image.
type Entry struct {
	// Path is absolute and clean ("/usr/bin/ls"), as IMA prints it for a
	// file on the root file system.
	Path string
	// Mode carries the type bits (fs.ModeDir, fs.ModeSymlink, ...) and the
	// permission bits (setuid/setgid/sticky included).
	Mode fs.FileMode
	// Size is the content size of a regular file (holes included).
	Size int64
	// Target is a symlink's target as stored (the ext4 reader cleans it:
	// "usr/bin/" reads as "usr/bin", which resolves the same).
	Target string
	// Link is, for a tar hard link, the absolute path of the earlier entry
	// whose content this one shares; Open is then nil.
	Link string

	open func() (io.ReadCloser, error)
}

// IsRegular reports whether e is a regular file (with content or a hard link).
func (e Entry) IsRegular() bool { return e.Mode.IsRegular() }

// IsSymlink reports whether e is a symbolic link.
func (e Entry) IsSymlink() bool { return e.Mode&fs.ModeSymlink != 0 }

// Open returns the content of a regular file. For a tar archive the
// reader is only valid inside the Walk callback that received e, because
// the archive is read as a stream.
func (e Entry) Open() (io.ReadCloser, error) {
	if e.open == nil {
		if e.Link != "" {
			return nil, fmt.Errorf("rootfs: %s is a hard link to %s: open that", e.Path, e.Link)
		}
		return nil, fmt.Errorf("rootfs: %s is not a regular file", e.Path)
	}
	return e.open()
}

// Reader walks the entries of one image.
type Reader interface {
	// Type is the image format.
	Type() Type
	// Walk calls fn for every entry, the root directory excepted; in
	// lexical order per directory for file system images, in archive
	// order for tar. An error from fn stops the walk and is returned.
	// A damaged image yields an error, never a partial silent walk.
	Walk(fn func(Entry) error) error
	// Close releases the image.
	Close() error
}

// ErrUnknownFormat is returned by Open for content it does not recognise.
var ErrUnknownFormat = errors.New("rootfs: unknown image format")

// Sniff names the format of an image from its first bytes: squashfs
// ("hsqs" at 0), ext2/3/4 (superblock magic 0xEF53 at 1080), or tar
// (possibly gzip, xz or zstd compressed; the compressed forms are only
// confirmed as tar when read).
func Sniff(head []byte) (Type, error) {
	switch {
	case len(head) >= 4 && string(head[:4]) == "hsqs":
		return TypeSquashfs, nil
	case len(head) >= 1082 && head[1080] == 0x53 && head[1081] == 0xEF:
		return TypeExt4, nil
	case compressionOf(head) != "":
		return TypeTar, nil
	case len(head) >= 262 && string(head[257:262]) == "ustar":
		return TypeTar, nil
	}
	return "", ErrUnknownFormat
}

// SniffLen is how many leading bytes Sniff needs at most.
const SniffLen = 1082

// Open opens the image at p: a directory, or a file whose format Sniff
// recognises.
func Open(p string) (Reader, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	if st.IsDir() {
		return OpenDir(p), nil
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	r, err := OpenReaderAt(f, st.Size())
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("rootfs: %s: %w", p, err)
	}
	return &closeWith{Reader: r, c: f}, nil
}

// OpenReaderAt opens an image held in r (size bytes), sniffing its format.
// The caller keeps r open until the Reader is closed.
func OpenReaderAt(r io.ReaderAt, size int64) (Reader, error) {
	head := make([]byte, SniffLen)
	n, err := r.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("rootfs: read header: %w", err)
	}
	t, err := Sniff(head[:n])
	if err != nil {
		return nil, err
	}
	switch t {
	case TypeSquashfs:
		return OpenSquashfs(r, size)
	case TypeExt4:
		return OpenExt4(r, size)
	default:
		return OpenTar(func() (io.ReadCloser, error) {
			return io.NopCloser(io.NewSectionReader(r, 0, size)), nil
		}), nil
	}
}

type closeWith struct {
	Reader
	c io.Closer
}

func (c *closeWith) Close() error {
	err := c.Reader.Close()
	if cerr := c.c.Close(); err == nil {
		err = cerr
	}
	return err
}

// cleanPath makes an archive or image name absolute and clean; ".."
// cannot climb above "/" (path.Clean of a rooted path).
func cleanPath(name string) string {
	return path.Clean("/" + strings.TrimPrefix(name, "./"))
}

// guard turns a panic of a third-party image parser on damaged input into
// an error, so a hostile image fails closed instead of crashing the hub.
func guard(what string, err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("rootfs: %s: damaged image (parser panic: %v)", what, r)
	}
}

// peek returns the first n bytes of r and a reader that still yields all of r.
func peek(r io.Reader, n int) ([]byte, io.Reader, error) {
	br := bufio.NewReaderSize(r, n)
	head, err := br.Peek(n)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, err
	}
	return bytes.Clone(head), br, nil
}
