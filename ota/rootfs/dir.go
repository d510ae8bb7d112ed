package rootfs

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

type dirReader struct{ root string }

// OpenDir reads an unpacked root file system in directory root. Symlinks
// are reported, never followed, so a link pointing outside root cannot
// pull host files into the walk.
// A root that is itself a symlink is resolved first (WalkDir would
// otherwise report the link and nothing under it).
func OpenDir(root string) Reader {
	if r, err := filepath.EvalSymlinks(root); err == nil {
		root = r
	}
	return &dirReader{root: root}
}

func (d *dirReader) Type() Type   { return TypeDir }
func (d *dirReader) Close() error { return nil }

func (d *dirReader) Walk(fn func(Entry) error) error {
	return filepath.WalkDir(d.root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("rootfs: dir %s: %w", p, err)
		}
		rel, err := filepath.Rel(d.root, p)
		if err != nil {
			return fmt.Errorf("rootfs: dir %s: %w", p, err)
		}
		if rel == "." {
			return nil
		}
		info, err := de.Info()
		if err != nil {
			return fmt.Errorf("rootfs: dir %s: %w", p, err)
		}
		e := Entry{Path: cleanPath(filepath.ToSlash(rel)), Mode: info.Mode()}
		switch {
		case info.Mode().IsRegular():
			e.Size = info.Size()
			e.open = func() (io.ReadCloser, error) { return os.Open(p) }
		case info.Mode()&fs.ModeSymlink != 0:
			if e.Target, err = os.Readlink(p); err != nil {
				return fmt.Errorf("rootfs: dir %s: %w", p, err)
			}
		}
		return fn(e)
	})
}
