package release

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
)

// countingReader tracks the offset of an uncompressed outer tar, so a
// member's data can later be re-read in place.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// openMender reads a Mender v3 artifact: an uncompressed tar of version,
// manifest, header.tar[.gz|.xz|.zst] and data/NNNN.tar[...]. The header's
// digest is checked against the manifest before it is parsed.
func (r *Release) openMender() error {
	cr := &countingReader{r: io.NewSectionReader(r.f, 0, r.size)}
	tr := tar.NewReader(cr)
	var (
		version, manifest []byte
		sums              map[string]string
		hdr               *MenderHeader
		data              = map[string][2]int64{} // data/NNNN.tar* → offset, size
	)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("mender: %w", err)
		}
		name := path.Clean(h.Name)
		switch {
		case name == "version":
			if version, err = readSmall(tr, "mender version"); err != nil {
				return err
			}
			if err := parseMenderVersion(version); err != nil {
				return err
			}
		case name == "manifest":
			if manifest, err = readSmall(tr, "mender manifest"); err != nil {
				return err
			}
			if sums, err = ParseMenderManifest(manifest); err != nil {
				return err
			}
			if err := checkSum(sums, "version", version); err != nil {
				return err
			}
		case strings.HasPrefix(name, "header.tar"):
			if sums == nil {
				return fmt.Errorf("mender: %s before manifest", name)
			}
			b, err := io.ReadAll(io.LimitReader(tr, 64<<20))
			if err != nil {
				return fmt.Errorf("mender: %s: %w", name, err)
			}
			if err := checkSum(sums, name, b); err != nil {
				return err
			}
			if hdr, err = parseMenderHeaderTar(b); err != nil {
				return err
			}
		case strings.HasPrefix(name, "data/") && strings.Contains(name, ".tar"):
			data[strings.SplitN(path.Base(name), ".", 2)[0]] = [2]int64{cr.n, h.Size}
		}
	}
	if version == nil || sums == nil || hdr == nil {
		return fmt.Errorf("mender: artifact lacks version, manifest or header")
	}
	r.Format, r.Name, r.Compatible = FormatMender, hdr.ArtifactName, hdr.DeviceTypes
	r.Version = hdr.ArtifactName
	if v := hdr.Provides["rootfs-image.version"]; v != "" {
		r.Version = v
	}
	// Images: the manifest's data/NNNN/<file> entries.
	var names []string
	for n := range sums {
		if strings.HasPrefix(n, "data/") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		parts := strings.SplitN(strings.TrimPrefix(n, "data/"), "/", 2)
		if len(parts) != 2 || checkFilename(parts[1]) != nil {
			return fmt.Errorf("mender: manifest entry %q is not data/NNNN/<file>", n)
		}
		typ := ""
		var idx int
		if _, err := fmt.Sscanf(parts[0], "%04d", &idx); err == nil && idx < len(hdr.PayloadTypes) {
			typ = hdr.PayloadTypes[idx]
		}
		r.Images = append(r.Images, Image{Name: parts[0], Filename: parts[1], SHA256: sums[n], Type: typ})
	}
	if len(r.Images) == 0 {
		return fmt.Errorf("mender: manifest lists no payload files")
	}
	im, err := r.pick()
	if err != nil {
		return err
	}
	loc, ok := data[im.Name]
	if !ok {
		return fmt.Errorf("mender: payload data/%s.tar* missing", im.Name)
	}
	r.RootfsImage = im.Filename
	r.extract = func(w io.Writer) error {
		return tarMember(io.NewSectionReader(r.f, loc[0], loc[1]), im.Filename, func(rd io.Reader) error {
			h := sha256.New()
			if _, err := io.Copy(io.MultiWriter(w, h), rd); err != nil {
				return err
			}
			return digestMismatch(im.Filename, im.SHA256, h)
		})
	}
	return nil
}

func checkSum(sums map[string]string, name string, b []byte) error {
	want, ok := sums[name]
	if !ok {
		return fmt.Errorf("mender: manifest does not list %s", name)
	}
	h := sha256.New()
	h.Write(b)
	if err := digestMismatch(name, want, h); err != nil {
		return fmt.Errorf("mender: %w", err)
	}
	return nil
}

// parseMenderHeaderTar reads header-info and headers/NNNN/type-info from
// the (compressed) header tar.
func parseMenderHeaderTar(b []byte) (*MenderHeader, error) {
	var hdr *MenderHeader
	var infos []*menderTypeInfo
	err := forTar(bytes.NewReader(b), func(name string, rd io.Reader) error {
		data, err := readSmall(rd, "mender "+name)
		if err != nil {
			return err
		}
		switch {
		case name == "header-info":
			hdr, err = ParseMenderHeaderInfo(data)
			return err
		case strings.HasPrefix(name, "headers/") && strings.HasSuffix(name, "/type-info"):
			ti, err := parseMenderTypeInfo(data)
			if err != nil {
				return err
			}
			infos = append(infos, ti)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mender header: %w", err)
	}
	if hdr == nil {
		return nil, fmt.Errorf("mender header: no header-info")
	}
	for _, ti := range infos {
		for k, v := range ti.Provides {
			hdr.Provides[k] = v
		}
	}
	return hdr, nil
}
