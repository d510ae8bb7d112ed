package predict

import (
	"bytes"
	"crypto"
	_ "crypto/sha1" // kernel hash algorithms IMA can be built with
	_ "crypto/sha256"
	_ "crypto/sha512"
	"encoding/binary"
	"fmt"
	"io"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ratatouille/rat/evidence/ima"
	"github.com/ratatouille/rat/evidence/runtimepolicy"
	"github.com/ratatouille/rat/ota/rootfs"
)

// IMAPolicy names the kernel IMA policy the release boots with.
type IMAPolicy string

const (
	// TCB is ima_policy=tcb: every file root opens for reading, every
	// executed or exec-mmapped file, every module and firmware blob.
	TCB IMAPolicy = "tcb"
	// Exec is the narrower policy the Ratatouille layer ships (BPRM_CHECK,
	// FILE_MMAP MAY_EXEC, MODULE_CHECK, FIRMWARE_CHECK): only what can run.
	Exec IMAPolicy = "exec"
)

// Class says why a file is in the policy.
type Class string

// File classes.
const (
	ClassExecutable   Class = "executable"
	ClassSharedObject Class = "shared-object"
	ClassModule       Class = "kernel-module"
	ClassFirmware     Class = "firmware"
	ClassScript       Class = "script"
	ClassFile         Class = "file" // measured only under tcb
)

// hashes are the kernel ima_hash algorithms predict can compute, by the
// names IMA logs (and Keylime policies use).
var hashes = map[string]crypto.Hash{"sha1": crypto.SHA1, "sha256": crypto.SHA256, "sha384": crypto.SHA384, "sha512": crypto.SHA512}

type config struct {
	base     *runtimepolicy.Policy
	policy   IMAPolicy
	alg      string
	excludes []string
	aliases  bool
	now      func() time.Time
}

// Option configures Predict.
type Option func(*config)

// WithIMAPolicy selects the kernel IMA policy (default TCB, the kernel's
// built-in ima_policy=tcb).
func WithIMAPolicy(p IMAPolicy) Option { return func(c *config) { c.policy = p } }

// WithHashAlgorithm sets the kernel's IMA hash algorithm (ima_hash=, or
// CONFIG_IMA_DEFAULT_HASH); default sha256. A policy hashed with another
// algorithm than the kernel's matches nothing.
func WithHashAlgorithm(name string) Option { return func(c *config) { c.alg = name } }

// WithExcludes adds the group's exclude regexes (Keylime syntax): they
// are written to the policy and matching files are left out.
func WithExcludes(patterns ...string) Option {
	return func(c *config) { c.excludes = append(c.excludes, patterns...) }
}

// WithoutAliases keys files only by canonical path. By default a file
// reachable through a symlink (a usr-merged /bin/sh, a libfoo.so.1 link)
// is also allowed under that name with the same digest: harmless, since
// only that exact content is allowed, and it keeps a prediction valid for
// logs whose paths were recorded through the link.
func WithoutAliases() Option { return func(c *config) { c.aliases = false } }

// WithBase merges the prediction into a copy of the group's base policy:
// what the devices add beyond the image (an agent installed separately,
// keyrings, ima-buf entries, verification keys), typically found with
// rat policy diff against a canary baseline.
func WithBase(p *runtimepolicy.Policy) Option { return func(c *config) { c.base = p } }

// WithClock sets the clock for the policy's meta.timestamp.
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// File is one measured file of the prediction.
type File struct {
	Path   string
	Class  Class
	Digest []byte
	// AliasOf is the canonical path when Path is a symlink name of it.
	AliasOf string
}

// Result is a predicted policy and what went into it.
type Result struct {
	Policy    *runtimepolicy.Policy
	Files     []File // sorted by path; aliases included
	Algorithm string
	// Unmeasured counts regular files the IMA policy will not measure.
	Unmeasured int
	// Excluded counts measured files left out by the exclude list.
	Excluded int
	// OSRelease is the image's os-release(5) (/etc/os-release, resolved,
	// else /usr/lib/os-release); nil when it has none. Devices report
	// VERSION_ID or IMAGE_VERSION from it.
	OSRelease map[string]string
	// OSReleaseErr says why an os-release present in the image was not read.
	OSReleaseErr error
}

// headLen is how much of a file classification looks at (ELF header).
const headLen = 64

// Predict walks the image and returns the runtime policy a device booted
// from it should satisfy. It fails rather than return a partial policy:
// a file it cannot read would otherwise become a false alarm on every
// device.
func Predict(r rootfs.Reader, opts ...Option) (*Result, error) {
	cfg := config{policy: TCB, alg: "sha256", aliases: true, now: time.Now}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.policy != TCB && cfg.policy != Exec {
		return nil, fmt.Errorf("predict: unknown IMA policy %q (want tcb or exec)", cfg.policy)
	}
	h, ok := hashes[cfg.alg]
	if !ok {
		return nil, fmt.Errorf("predict: hash algorithm %q not supported (want sha1, sha256, sha384 or sha512)", cfg.alg)
	}
	idx := rootfs.NewIndex()
	measured := map[string]File{}
	var hardLinks []rootfs.Entry
	res := &Result{Algorithm: cfg.alg}
	osRelease := map[string][]byte{}
	err := r.Walk(func(e rootfs.Entry) error {
		idx.Add(e)
		if !e.IsRegular() {
			return nil
		}
		if e.Link != "" {
			hardLinks = append(hardLinks, e)
			return nil
		}
		open := e.Open
		if slices.Contains(rootfs.OSReleasePaths, e.Path) && e.Size <= rootfs.MaxOSRelease {
			// Kept for the release check; a tar entry can be read once.
			b, err := readAll(e)
			if err != nil {
				return err
			}
			osRelease[e.Path] = b
			open = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
		}
		f, ok, err := measure(e, open, cfg.policy, h)
		if err != nil {
			return err
		}
		if !ok {
			res.Unmeasured++
			return nil
		}
		measured[e.Path] = f
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("predict: %w", err)
	}
	if len(measured) == 0 && res.Unmeasured == 0 && len(hardLinks) == 0 {
		// An empty walk means a wrong path or an unreadable image, never
		// a release: an empty policy would reject every device.
		return nil, fmt.Errorf("predict: the image has no regular files")
	}
	res.OSRelease, res.OSReleaseErr = pickOSRelease(idx, osRelease)
	// A hard link is the same inode: measured exactly when its target is.
	for _, e := range hardLinks {
		t, ok := measured[e.Link]
		if !ok {
			if _, known := idx.Lookup(e.Link); !known {
				return nil, fmt.Errorf("predict: hard link %s to missing %s", e.Path, e.Link)
			}
			res.Unmeasured++
			continue
		}
		measured[e.Path] = File{Path: e.Path, Class: t.Class, Digest: t.Digest}
	}
	if cfg.aliases {
		for alias, canon := range idx.Aliases() {
			if _, real := measured[alias]; real {
				continue
			}
			if t, ok := measured[canon]; ok {
				measured[alias] = File{Path: alias, Class: t.Class, Digest: t.Digest, AliasOf: canon}
			}
		}
	}
	paths := make([]string, 0, len(measured))
	for p := range measured {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	entries := make([]ima.Entry, 0, len(paths))
	for _, p := range paths {
		f := measured[p]
		res.Files = append(res.Files, f)
		entries = append(entries, ima.Entry{PCR: 10, TemplateName: "ima-ng", DigestAlg: cfg.alg, Digest: f.Digest, Path: p})
	}
	gen := []runtimepolicy.GenOption{runtimepolicy.WithExcludes(cfg.excludes...), runtimepolicy.WithClock(cfg.now)}
	if cfg.base != nil {
		gen = append(gen, runtimepolicy.WithBase(cfg.base))
	}
	pol, err := runtimepolicy.FromEntries(entries, gen...)
	if err != nil {
		return nil, fmt.Errorf("predict: %w", err)
	}
	kept := res.Files[:0]
	for _, f := range res.Files {
		if pol.Excluded(f.Path) {
			res.Excluded++
			continue
		}
		kept = append(kept, f)
	}
	res.Files = kept
	res.Policy = pol
	return res, nil
}

// measure hashes e when the IMA policy measures it.
func measure(e rootfs.Entry, open func() (io.ReadCloser, error), pol IMAPolicy, h crypto.Hash) (File, bool, error) {
	class, byPath := classifyPath(e.Path)
	if pol == Exec && !byPath && e.Size < 4 {
		return File{}, false, nil // too short to be ELF or a script
	}
	rc, err := open()
	if err != nil {
		return File{}, false, fmt.Errorf("predict: %s: %w", e.Path, err)
	}
	defer rc.Close()
	head := make([]byte, headLen)
	n, err := io.ReadFull(rc, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return File{}, false, fmt.Errorf("predict: read %s: %w", e.Path, err)
	}
	head = head[:n]
	if !byPath {
		class = classifyContent(e.Path, head, e.Mode.Perm()&0o111 != 0)
	}
	if pol == Exec && class == ClassFile {
		return File{}, false, nil
	}
	hh := h.New()
	hh.Write(head)
	m, err := io.Copy(hh, rc)
	if err != nil {
		return File{}, false, fmt.Errorf("predict: read %s: %w", e.Path, err)
	}
	if got := int64(n) + m; got != e.Size {
		return File{}, false, fmt.Errorf("predict: %s: read %d bytes, image says %d", e.Path, got, e.Size)
	}
	return File{Path: e.Path, Class: class, Digest: hh.Sum(nil)}, true, nil
}

var moduleSuffixes = []string{".ko", ".ko.xz", ".ko.gz", ".ko.zst"}

// classifyPath recognises modules and firmware by where the kernel loads
// them from (MODULE_CHECK and FIRMWARE_CHECK measure the file as stored,
// compressed or not).
func classifyPath(p string) (Class, bool) {
	for _, dir := range []string{"/lib/modules/", "/usr/lib/modules/"} {
		if strings.HasPrefix(p, dir) {
			for _, s := range moduleSuffixes {
				if strings.HasSuffix(p, s) {
					return ClassModule, true
				}
			}
		}
	}
	for _, dir := range []string{"/lib/firmware/", "/usr/lib/firmware/"} {
		if strings.HasPrefix(p, dir) {
			return ClassFirmware, true
		}
	}
	return ClassFile, false
}

// classifyContent recognises what can be executed or exec-mapped: ELF
// executables and shared objects (whatever the mode bits: ld.so maps
// libraries that are not executable), and "#!" scripts with an execute
// bit (BPRM_CHECK measures the script itself before its interpreter).
func classifyContent(p string, head []byte, executable bool) Class {
	if len(head) >= 18 && bytes.HasPrefix(head, []byte("\x7fELF")) {
		var typ uint16
		switch head[5] {
		case 1:
			typ = binary.LittleEndian.Uint16(head[16:])
		case 2:
			typ = binary.BigEndian.Uint16(head[16:])
		}
		switch typ {
		case 2: // ET_EXEC
			return ClassExecutable
		case 3: // ET_DYN: PIE executable or shared object
			if strings.Contains(path.Base(p), ".so") || !executable {
				return ClassSharedObject
			}
			return ClassExecutable
		}
		return ClassFile
	}
	if executable && bytes.HasPrefix(head, []byte("#!")) {
		return ClassScript
	}
	return ClassFile
}

func readAll(e rootfs.Entry) ([]byte, error) {
	rc, err := e.Open()
	if err != nil {
		return nil, fmt.Errorf("predict: %s: %w", e.Path, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("predict: read %s: %w", e.Path, err)
	}
	return b, nil
}

// pickOSRelease follows /etc/os-release inside the image (usually a link
// to ../usr/lib/os-release) and falls back to /usr/lib/os-release, as
// os-release(5) tells readers to.
func pickOSRelease(idx *rootfs.Index, raw map[string][]byte) (map[string]string, error) {
	for _, p := range rootfs.OSReleasePaths {
		real, err := idx.Resolve(p)
		if err != nil {
			continue
		}
		b, ok := raw[real]
		if !ok {
			if e, found := idx.Lookup(real); found && e.IsRegular() && e.Size > rootfs.MaxOSRelease {
				return nil, fmt.Errorf("%s is larger than %d bytes", real, rootfs.MaxOSRelease)
			}
			continue
		}
		return rootfs.ParseOSRelease(b)
	}
	return nil, nil
}
