package release

import (
	"crypto/sha256"
	"fmt"
	"io"
)

// openSWU reads a SWUpdate .swu: a newc cpio whose first member is
// sw-description, followed by the images it lists.
func (r *Release) openSWU() error {
	ents, err := readCPIO(r.f, r.size)
	if err != nil {
		return err
	}
	if len(ents) == 0 || ents[0].Name != "sw-description" {
		// SWUpdate streams the archive and must meet sw-description first.
		return fmt.Errorf("swu: first cpio member is not sw-description")
	}
	descb, err := readSmall(io.NewSectionReader(r.f, ents[0].Offset, ents[0].Size), "sw-description")
	if err != nil {
		return err
	}
	d, err := ParseSWDescription(descb)
	if err != nil {
		return err
	}
	r.Format, r.Version, r.Compatible, r.Images = FormatSWUpdate, d.Version, d.HardwareCompatibility, d.Images
	if len(r.Images) == 0 {
		return fmt.Errorf("swu: sw-description lists no images")
	}
	im, err := r.pick()
	if err != nil {
		return err
	}
	if im.SHA256 == "" {
		// Without a declared digest nothing ties the bytes we would
		// predict from to what SWUpdate installs.
		return fmt.Errorf("swu: image %s has no sha256 in sw-description", im.Filename)
	}
	var ent *cpioEntry
	for i := range ents {
		if ents[i].Name == im.Filename {
			ent = &ents[i]
		}
	}
	if ent == nil {
		return fmt.Errorf("swu: %s: listed in sw-description but not in the archive", im.Filename)
	}
	sec := io.NewSectionReader(r.f, ent.Offset, ent.Size)
	h := sha256.New()
	if _, err := io.Copy(h, sec); err != nil {
		return fmt.Errorf("swu: read %s: %w", im.Filename, err)
	}
	if err := digestMismatch(im.Filename, im.SHA256, h); err != nil {
		return fmt.Errorf("swu: %w", err)
	}
	r.RootfsImage = im.Filename
	r.locate = func() (io.ReaderAt, int64, error) { return sec, ent.Size, nil }
	return nil
}
