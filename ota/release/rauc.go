package release

import (
	"crypto/sha256"
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
		// signature; a squashfs without one may be a bare root file system.
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
