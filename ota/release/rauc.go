package release

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/ratatouille/rat/ota/rootfs"
)

var errNoManifest = errors.New("no manifest.raucm")

// openRAUC reads a plain RAUC bundle: a squashfs holding manifest.raucm
// and the images, followed by a CMS signature (not verified here).
func (r *Release) openRAUC() error {
	sq, err := rootfs.OpenSquashfs(r.f, r.size)
	if err != nil {
		return err
	}
	var manifest []byte
	err = sq.Walk(func(e rootfs.Entry) error {
		if e.Path != "/manifest.raucm" || !e.IsRegular() {
			return nil
		}
		rc, err := e.Open()
		if err != nil {
			return err
		}
		defer rc.Close()
		manifest, err = readSmall(rc, "manifest.raucm")
		return err
	})
	if err != nil {
		return err
	}
	if manifest == nil {
		// verity and crypt bundles keep the manifest inside the CMS
		// signature; reading such a bundle's squashfs as a root file
		// system would predict a policy for the bundle, not the release.
		if r.hasRAUCSignature() {
			return fmt.Errorf("rauc bundle without manifest.raucm in its squashfs: a verity or crypt bundle keeps the manifest in the CMS signature, which is not read here; predict from the rootfs image the bundle was built from")
		}
		// A squashfs without one may be a bare root file system.
		return errNoManifest
	}
	m, err := ParseRAUCManifest(manifest)
	if err != nil {
		return err
	}
	if m.Format != "plain" {
		return fmt.Errorf("rauc bundle format %q: only plain bundles are read (verity and crypt keep the manifest in the CMS signature)", m.Format)
	}
	r.Format, r.Version, r.Compatible, r.Images = FormatRAUC, m.Version, []string{m.Compatible}, m.Images
	im, err := r.pick()
	if err != nil {
		return err
	}
	r.RootfsImage = im.Filename
	r.extract = func(w io.Writer) error {
		found := false
		err := sq.Walk(func(e rootfs.Entry) error {
			if e.Path != "/"+im.Filename || !e.IsRegular() {
				return nil
			}
			found = true
			rc, err := e.Open()
			if err != nil {
				return err
			}
			defer rc.Close()
			h := sha256.New()
			if _, err := io.Copy(io.MultiWriter(w, h), rc); err != nil {
				return err
			}
			return digestMismatch(im.Filename, im.SHA256, h)
		})
		if err == nil && !found {
			err = fmt.Errorf("%s: listed in the manifest but not in the bundle", im.Filename)
		}
		return err
	}
	return nil
}

// hasRAUCSignature reports whether the file ends the way every RAUC
// bundle does: a DER (CMS) blob followed by its size as a big-endian
// uint64. A bare squashfs image ends in padding.
func (r *Release) hasRAUCSignature() bool {
	if r.size < 16 {
		return false
	}
	var tail [8]byte
	if _, err := r.f.ReadAt(tail[:], r.size-8); err != nil {
		return false
	}
	n := binary.BigEndian.Uint64(tail[:])
	if n == 0 || n > uint64(r.size-8) {
		return false
	}
	var first [1]byte
	if _, err := r.f.ReadAt(first[:], r.size-8-int64(n)); err != nil {
		return false
	}
	return first[0] == 0x30
}
