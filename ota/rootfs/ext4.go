package rootfs

import (
	"fmt"
	"io"
	"io/fs"
	"path"
	"sync"

	"github.com/masahiro331/go-ext4-filesystem/ext4"
)

// maxDepth bounds directory recursion: a damaged image whose directory
// entry points at an ancestor must not recurse forever.
const maxDepth = 128

type ext4Reader struct{ fs *ext4.FileSystem }

// OpenExt4 reads an ext2/3/4 image with a pure Go reader
// (masahiro331/go-ext4-filesystem, which reads holes, unwritten extents
// and 1 KiB-block images correctly; go-diskfs v1.9.4 does not).
func OpenExt4(r io.ReaderAt, size int64) (rd Reader, err error) {
	defer guard("ext4", &err)
	f, err := ext4.NewFS(*io.NewSectionReader(r, 0, size), &inodeCache{m: map[string]any{}})
	if err != nil {
		return nil, fmt.Errorf("rootfs: ext4: %w", err)
	}
	return &ext4Reader{fs: f}, nil
}

func (x *ext4Reader) Type() Type   { return TypeExt4 }
func (x *ext4Reader) Close() error { return nil }

func (x *ext4Reader) Walk(fn func(Entry) error) (err error) {
	defer guard("ext4", &err)
	return x.walk(".", 0, fn)
}

func (x *ext4Reader) walk(dir string, depth int, fn func(Entry) error) error {
	if depth > maxDepth {
		return fmt.Errorf("rootfs: ext4: %s: directories nest deeper than %d", dir, maxDepth)
	}
	des, err := x.fs.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("rootfs: ext4: %w", err)
	}
	// ReadDir keeps on-disk (hash) order; walk lexically like the others.
	sortDirEntries(des)
	for _, de := range des {
		p := path.Join(dir, de.Name())
		if de.Name() == "" || de.Name() == "." || de.Name() == ".." {
			continue
		}
		info, err := de.Info()
		if err != nil {
			return fmt.Errorf("rootfs: ext4: %s: %w", p, err)
		}
		e := Entry{Path: cleanPath(p), Mode: info.Mode()}
		switch {
		case info.Mode().IsRegular():
			e.Size = info.Size()
			e.open = func() (io.ReadCloser, error) {
				f, err := x.fs.Open(p)
				if err != nil {
					return nil, fmt.Errorf("rootfs: ext4: %w", err)
				}
				return f, nil
			}
		case info.Mode()&fs.ModeSymlink != 0:
			if e.Target, err = x.fs.ReadLink(p); err != nil {
				return fmt.Errorf("rootfs: ext4: %s: %w", p, err)
			}
		}
		if err := fn(e); err != nil {
			return err
		}
		if info.IsDir() {
			if err := x.walk(p, depth+1, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// inodeCache keeps parsed inodes: the reader resolves every path from the
// root, so without it each open re-reads every inode on the way.
type inodeCache struct {
	mu sync.Mutex
	m  map[string]any
}

func (c *inodeCache) Add(k string, v any) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[k] = v
	return false
}

func (c *inodeCache) Get(k string) (any, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[k]
	return v, ok
}
