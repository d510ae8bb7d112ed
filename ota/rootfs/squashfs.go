package rootfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs/backend"
	"github.com/diskfs/go-diskfs/filesystem/squashfs"
)

type squashReader struct{ fs *squashfs.FileSystem }

// OpenSquashfs reads a squashfs image (gzip, xz, zstd, lz4, lzo or lzma
// compressed) with go-diskfs's pure Go reader.
func OpenSquashfs(r io.ReaderAt, size int64) (rd Reader, err error) {
	defer guard("squashfs", &err)
	f, err := squashfs.Read(&readerAtStorage{r: io.NewSectionReader(r, 0, size)}, size, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("rootfs: squashfs: %w", err)
	}
	return &squashReader{fs: f}, nil
}

func (s *squashReader) Type() Type   { return TypeSquashfs }
func (s *squashReader) Close() error { return nil }

func (s *squashReader) Walk(fn func(Entry) error) (err error) {
	defer guard("squashfs", &err)
	return s.walk(".", 0, fn)
}

func (s *squashReader) walk(dir string, depth int, fn func(Entry) error) error {
	if depth > maxDepth {
		return fmt.Errorf("rootfs: squashfs: %s: directories nest deeper than %d", dir, maxDepth)
	}
	des, err := s.fs.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("rootfs: squashfs: %w", err)
	}
	sortDirEntries(des)
	for _, de := range des {
		if de.Name() == "" || de.Name() == "." || de.Name() == ".." || strings.Contains(de.Name(), "/") {
			return fmt.Errorf("rootfs: squashfs: %s: bad entry name %q", dir, de.Name())
		}
		p := path.Join(dir, de.Name())
		info, err := de.Info()
		if err != nil {
			return fmt.Errorf("rootfs: squashfs: %s: %w", p, err)
		}
		e := Entry{Path: cleanPath(p), Mode: info.Mode()}
		switch {
		case info.Mode().IsRegular():
			e.Size = info.Size()
			e.open = func() (io.ReadCloser, error) {
				f, err := s.fs.OpenFile(p, os.O_RDONLY)
				if err != nil {
					return nil, fmt.Errorf("rootfs: squashfs: %w", err)
				}
				return f, nil
			}
		case info.Mode()&fs.ModeSymlink != 0:
			st, ok := info.Sys().(*squashfs.StatT)
			if !ok || st.LinkTarget == "" {
				return fmt.Errorf("rootfs: squashfs: %s: symlink without target", p)
			}
			e.Target = st.LinkTarget
		}
		if err := fn(e); err != nil {
			return err
		}
		if info.IsDir() {
			if err := s.walk(p, depth+1, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

func sortDirEntries(des []fs.DirEntry) {
	slices.SortFunc(des, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
}

// readerAtStorage adapts an io.SectionReader to go-diskfs's read-only
// backend.Storage, so images inside bundles are read in place.
type readerAtStorage struct{ r *io.SectionReader }

var errReadOnly = errors.New("rootfs: image is read-only")

func (b *readerAtStorage) Stat() (fs.FileInfo, error)                { return sizeInfo(b.r.Size()), nil }
func (b *readerAtStorage) Read(p []byte) (int, error)                { return b.r.Read(p) }
func (b *readerAtStorage) ReadAt(p []byte, off int64) (int, error)   { return b.r.ReadAt(p, off) }
func (b *readerAtStorage) Seek(off int64, whence int) (int64, error) { return b.r.Seek(off, whence) }
func (b *readerAtStorage) Close() error                              { return nil }
func (b *readerAtStorage) Sys() (*os.File, error)                    { return nil, errReadOnly }
func (b *readerAtStorage) Writable() (backend.WritableFile, error)   { return nil, errReadOnly }
func (b *readerAtStorage) Path() string                              { return "" }

type sizeInfo int64

func (s sizeInfo) Name() string       { return "image" }
func (s sizeInfo) Size() int64        { return int64(s) }
func (s sizeInfo) Mode() fs.FileMode  { return 0o444 }
func (s sizeInfo) ModTime() time.Time { return time.Time{} }
func (s sizeInfo) IsDir() bool        { return false }
func (s sizeInfo) Sys() any           { return nil }
