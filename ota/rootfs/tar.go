package rootfs

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

type tarReader struct {
	open func() (io.ReadCloser, error)
}

// OpenTar reads a tar archive, plain or gzip, xz or zstd compressed (the
// compression is sniffed from the magic bytes). open is called once per
// Walk, so a walk can be repeated.
func OpenTar(open func() (io.ReadCloser, error)) Reader { return &tarReader{open: open} }

func (t *tarReader) Type() Type   { return TypeTar }
func (t *tarReader) Close() error { return nil }

// compressionOf names the compression of a stream from its magic bytes.
func compressionOf(head []byte) string {
	switch {
	case len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b:
		return "gzip"
	case len(head) >= 6 && string(head[:6]) == "\xfd7zXZ\x00":
		return "xz"
	case len(head) >= 4 && string(head[:4]) == "\x28\xb5\x2f\xfd":
		return "zstd"
	}
	return ""
}

// Decompress returns r decompressed when it starts with a gzip, xz or
// zstd magic, and r itself otherwise.
func Decompress(r io.Reader) (io.ReadCloser, error) {
	head, r, err := peek(r, 6)
	if err != nil {
		return nil, fmt.Errorf("rootfs: read: %w", err)
	}
	switch compressionOf(head) {
	case "gzip":
		z, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("rootfs: gzip: %w", err)
		}
		return z, nil
	case "xz":
		z, err := xz.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("rootfs: xz: %w", err)
		}
		return io.NopCloser(z), nil
	case "zstd":
		// The decoder window is bounded (zstd's default 8 MiB cap on
		// window size would refuse some archives; 128 MiB matches
		// zstd --long=27) so a hostile frame cannot demand unbounded memory.
		z, err := zstd.NewReader(r, zstd.WithDecoderMaxWindow(128<<20), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("rootfs: zstd: %w", err)
		}
		return z.IOReadCloser(), nil
	}
	return io.NopCloser(r), nil
}

func (t *tarReader) Walk(fn func(Entry) error) error {
	src, err := t.open()
	if err != nil {
		return fmt.Errorf("rootfs: tar: %w", err)
	}
	defer src.Close()
	dec, err := Decompress(src)
	if err != nil {
		return err
	}
	defer dec.Close()
	tr := tar.NewReader(dec)
	for n := 0; ; n++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			if n == 0 {
				return fmt.Errorf("rootfs: tar: no entries")
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("rootfs: tar entry %d: %w", n+1, err)
		}
		p := cleanPath(h.Name)
		if p == "/" {
			continue
		}
		e := Entry{Path: p, Mode: h.FileInfo().Mode()}
		switch h.Typeflag {
		case tar.TypeReg, tar.TypeGNUSparse:
			e.Size = h.Size
			read := false
			e.open = func() (io.ReadCloser, error) {
				if read {
					return nil, fmt.Errorf("rootfs: tar: %s opened twice", p)
				}
				read = true
				return io.NopCloser(tr), nil
			}
		case tar.TypeLink:
			// A hard link is a regular file sharing an earlier entry's inode.
			e.Mode = e.Mode&fs.ModePerm | e.Mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)
			e.Link = cleanPath(h.Linkname)
		case tar.TypeSymlink:
			e.Target = h.Linkname
		case tar.TypeXGlobalHeader:
			continue
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}
