package release

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/ratatouille/rat/ota/rootfs"
)

// Format names a release artifact format.
type Format string

// Release formats.
const (
	FormatRAUC     Format = "rauc"
	FormatSWUpdate Format = "swupdate"
	FormatMender   Format = "mender"
	FormatImage    Format = "image" // a bare root file system image or directory
)

// Image is one image an artifact carries.
type Image struct {
	Name       string // RAUC slot class, SWUpdate name, Mender payload index
	Filename   string
	SHA256     string // as declared by the artifact's metadata (lowercase hex)
	Size       int64  // declared size, 0 when not declared
	Type       string // RAUC slot class, SWUpdate handler type, Mender payload type
	Version    string // SWUpdate per-image version
	Compressed string // SWUpdate "compressed" attribute
}

// Release is an opened release artifact.
type Release struct {
	Format  Format
	Version string
	// Name is the Mender artifact name (empty for other formats).
	Name string
	// Compatible is RAUC's compatible, SWUpdate's hardware-compatibility
	// or Mender's device types: which devices may install it.
	Compatible []string
	Images     []Image
	// RootfsImage is the Filename of the image OpenRootfs reads.
	RootfsImage string
	// Digest is the sha256 of the artifact file as a whole: what an OTA
	// server distributes and what the hub's release record names.
	Digest string

	f      *os.File
	size   int64
	cfg    config
	temps  []string
	locate func() (io.ReaderAt, int64, error) // in-place rootfs image
	// extract copies the rootfs image out when it cannot be read in place.
	extract func(w io.Writer) error
	dir     string // FormatImage of a directory
}

type config struct {
	version  string
	image    string
	tempDir  string
	maxImage int64
}

// Option configures Open.
type Option func(*config)

// WithVersion gives the release version: required for a bare image;
// for an artifact it must equal the version its metadata declares, so a
// mislabelled upload fails instead of binding a policy to the wrong
// release.
func WithVersion(v string) Option { return func(c *config) { c.version = v } }

// WithImage picks the rootfs image by file name or RAUC slot class /
// SWUpdate image name, for artifacts carrying several images.
func WithImage(name string) Option { return func(c *config) { c.image = name } }

// WithTempDir sets where compressed or bundled images are unpacked.
func WithTempDir(dir string) Option { return func(c *config) { c.tempDir = dir } }

// WithMaxImageSize bounds an unpacked image (default 16 GiB) so a
// decompression bomb cannot fill the disk.
func WithMaxImageSize(n int64) Option { return func(c *config) { c.maxImage = n } }

// Open reads the release artifact at p (a RAUC bundle, a .swu, a Mender
// artifact, a bare image file or a root file system directory) and checks
// the digests its metadata declares for the image it will read.
func Open(p string, opts ...Option) (*Release, error) {
	cfg := config{maxImage: 16 << 30}
	for _, o := range opts {
		o(&cfg)
	}
	st, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	if st.IsDir() {
		if cfg.version == "" {
			return nil, fmt.Errorf("release: %s is a directory: the version must be given", p)
		}
		return &Release{Format: FormatImage, Version: cfg.version, dir: p, cfg: cfg}, nil
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	r := &Release{f: f, size: st.Size(), cfg: cfg}
	if err := r.open(filepath.Base(p)); err != nil {
		r.Close()
		return nil, fmt.Errorf("release: %s: %w", p, err)
	}
	return r, nil
}

func (r *Release) open(base string) error {
	d := sha256.New()
	if _, err := io.Copy(d, io.NewSectionReader(r.f, 0, r.size)); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	r.Digest = hex.EncodeToString(d.Sum(nil))
	head := make([]byte, rootfs.SniffLen)
	n, err := r.f.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read: %w", err)
	}
	head = head[:n]
	switch {
	case bytes.HasPrefix(head, []byte("070701")) || bytes.HasPrefix(head, []byte("070702")):
		err = r.openSWU()
	case len(head) >= 262 && string(head[257:262]) == "ustar" && strings.TrimRight(string(head[:100]), "\x00") == "version":
		err = r.openMender()
	case bytes.HasPrefix(head, []byte("hsqs")):
		err = r.openRAUC()
		if errors.Is(err, errNoManifest) {
			err = r.openImage(base) // a bare squashfs root file system
		}
	default:
		err = r.openImage(base)
	}
	if err != nil {
		return err
	}
	if r.cfg.version != "" && r.Format != FormatImage && r.cfg.version != r.Version {
		return fmt.Errorf("%s artifact declares version %q, not the %q given", r.Format, r.Version, r.cfg.version)
	}
	return nil
}

func (r *Release) openImage(base string) error {
	head := make([]byte, rootfs.SniffLen)
	n, _ := r.f.ReadAt(head, 0)
	if _, err := rootfs.Sniff(head[:n]); err != nil {
		return err
	}
	if r.cfg.version == "" {
		return fmt.Errorf("a bare image carries no version: it must be given")
	}
	r.Format, r.Version = FormatImage, r.cfg.version
	r.Images = []Image{{Name: "rootfs", Filename: base, SHA256: r.Digest, Size: r.size, Type: "rootfs"}}
	r.RootfsImage = base
	r.locate = func() (io.ReaderAt, int64, error) { return r.f, r.size, nil }
	return nil
}

// pick chooses the rootfs image: the one named by WithImage, else the
// first whose name, type or file name says rootfs, else the only one.
func (r *Release) pick() (Image, error) {
	if r.cfg.image != "" {
		for _, im := range r.Images {
			if im.Filename == r.cfg.image || im.Name == r.cfg.image {
				return im, nil
			}
		}
		return Image{}, fmt.Errorf("no image %q in the %s artifact", r.cfg.image, r.Format)
	}
	for _, im := range r.Images {
		for _, s := range []string{im.Name, im.Type, im.Filename} {
			if strings.Contains(strings.ToLower(s), "rootfs") {
				return im, nil
			}
		}
	}
	if len(r.Images) == 1 {
		return r.Images[0], nil
	}
	return Image{}, fmt.Errorf("%s artifact has %d images and none is named rootfs: choose one", r.Format, len(r.Images))
}

// OpenRootfs opens the release's root file system. Images that are
// compressed or held inside another file system are first unpacked to a
// temporary file (removed by Close); their digest is checked against the
// artifact's metadata before a single byte is parsed.
func (r *Release) OpenRootfs() (rootfs.Reader, error) {
	if r.dir != "" {
		return rootfs.OpenDir(r.dir), nil
	}
	if r.locate != nil {
		ra, size, err := r.locate()
		if err != nil {
			return nil, fmt.Errorf("release: %s: %w", r.RootfsImage, err)
		}
		return r.openImageAt(ra, size)
	}
	tmp, err := r.tempFile()
	if err != nil {
		return nil, err
	}
	if err := r.extract(&limitWriter{w: tmp, n: r.cfg.maxImage}); err != nil {
		return nil, fmt.Errorf("release: unpack %s: %w", r.RootfsImage, err)
	}
	st, err := tmp.Stat()
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	return r.openImageAt(tmp, st.Size())
}

// openImageAt opens an image that may itself be compressed: a compressed
// tar is streamed in place; a compressed file system image is unpacked.
func (r *Release) openImageAt(ra io.ReaderAt, size int64) (rootfs.Reader, error) {
	head := make([]byte, 6)
	n, _ := ra.ReadAt(head, 0)
	if !isCompressed(head[:n]) {
		rd, err := rootfs.OpenReaderAt(ra, size)
		if err != nil {
			return nil, fmt.Errorf("release: %s: %w", r.RootfsImage, err)
		}
		return rd, nil
	}
	dec, err := rootfs.Decompress(io.NewSectionReader(ra, 0, size))
	if err != nil {
		return nil, err
	}
	inner := make([]byte, rootfs.SniffLen)
	m, _ := io.ReadFull(dec, inner)
	dec.Close()
	t, err := rootfs.Sniff(inner[:m])
	if err != nil {
		return nil, fmt.Errorf("release: %s: compressed, and inside: %w", r.RootfsImage, err)
	}
	if t == rootfs.TypeTar {
		return rootfs.OpenTar(func() (io.ReadCloser, error) { return io.NopCloser(io.NewSectionReader(ra, 0, size)), nil }), nil
	}
	tmp, err := r.tempFile()
	if err != nil {
		return nil, err
	}
	dec, err = rootfs.Decompress(io.NewSectionReader(ra, 0, size))
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	if _, err := io.Copy(&limitWriter{w: tmp, n: r.cfg.maxImage}, dec); err != nil {
		return nil, fmt.Errorf("release: decompress %s: %w", r.RootfsImage, err)
	}
	st, err := tmp.Stat()
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	rd, err := rootfs.OpenReaderAt(tmp, st.Size())
	if err != nil {
		return nil, fmt.Errorf("release: %s: %w", r.RootfsImage, err)
	}
	return rd, nil
}

func isCompressed(head []byte) bool {
	return bytes.HasPrefix(head, []byte{0x1f, 0x8b}) || bytes.HasPrefix(head, []byte("\xfd7zXZ\x00")) || bytes.HasPrefix(head, []byte("\x28\xb5\x2f\xfd"))
}

func (r *Release) tempFile() (*os.File, error) {
	f, err := os.CreateTemp(r.cfg.tempDir, "rat-release-*.img")
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	r.temps = append(r.temps, f.Name())
	return f, nil
}

// Close releases the artifact and removes unpacked images.
func (r *Release) Close() error {
	var err error
	if r.f != nil {
		err = r.f.Close()
	}
	for _, t := range r.temps {
		if rerr := os.Remove(t); rerr != nil && err == nil && !os.IsNotExist(rerr) {
			err = rerr
		}
	}
	r.temps = nil
	return err
}

var errSizeLimit = errors.New("image larger than the unpack limit")

type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		return 0, errSizeLimit
	}
	l.n -= int64(len(p))
	return l.w.Write(p)
}

// digestMismatch names an image whose bytes do not hash to what the
// artifact declares: a damaged or tampered artifact.
func digestMismatch(name, want string, h hash.Hash) error {
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("image %s: sha256 %s, but the artifact declares %s", name, got, want)
	}
	return nil
}

// readSmall reads a whole metadata member, refusing oversized ones.
func readSmall(rd io.Reader, what string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(rd, maxMetadata+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if len(b) > maxMetadata {
		return nil, fmt.Errorf("%s: larger than %d bytes", what, maxMetadata)
	}
	return b, nil
}

// forTar calls fn for every regular member of a (possibly compressed)
// tar stream, with its clean name.
func forTar(src io.Reader, fn func(name string, rd io.Reader) error) error {
	dec, err := rootfs.Decompress(src)
	if err != nil {
		return err
	}
	defer dec.Close()
	tr := tar.NewReader(dec)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if h.Typeflag == tar.TypeReg {
			if err := fn(path.Clean(h.Name), tr); err != nil {
				return err
			}
		}
	}
}

var errFound = errors.New("found")

// tarMember finds name in a (possibly compressed) tar stream and calls fn
// with its content.
func tarMember(src io.Reader, name string, fn func(io.Reader) error) error {
	var ferr error
	err := forTar(src, func(n string, rd io.Reader) error {
		if n != name {
			return nil
		}
		ferr = fn(rd)
		return errFound
	})
	switch {
	case errors.Is(err, errFound):
		return ferr
	case err != nil:
		return err
	}
	return fmt.Errorf("%s: not in the archive", name)
}
