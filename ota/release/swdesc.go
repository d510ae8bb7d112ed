package release

import (
	"fmt"
	"sort"
	"strings"
)

// SWDescription is what Ratatouille needs of a SWUpdate sw-description.
type SWDescription struct {
	Version               string
	Description           string
	HardwareCompatibility []string
	Images                []Image
}

// ParseSWDescription reads a sw-description (libconfig, or its JSON
// form): software.version, hardware-compatibility, and every image of the
// "images" lists, including those under board or selection groups
// (software.<board>.<set>.<mode>.images).
func ParseSWDescription(data []byte) (*SWDescription, error) {
	if len(data) > maxMetadata {
		return nil, fmt.Errorf("release: sw-description: %d bytes is too large", len(data))
	}
	root, err := parseLibconfig(string(data))
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	sw, ok := root["software"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("release: sw-description: no software group")
	}
	d := &SWDescription{}
	d.Version, _ = sw["version"].(string)
	d.Description, _ = sw["description"].(string)
	if hw, ok := sw["hardware-compatibility"].([]any); ok {
		for _, v := range hw {
			if s, ok := v.(string); ok {
				d.HardwareCompatibility = append(d.HardwareCompatibility, s)
			}
		}
	}
	seen := map[string]bool{}
	var collect func(g map[string]any, where string) error
	collect = func(g map[string]any, where string) error {
		keys := make([]string, 0, len(g))
		for k := range g {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			switch v := g[k].(type) {
			case map[string]any:
				if err := collect(v, where+"."+k); err != nil {
					return err
				}
			case []any:
				if k != "images" {
					continue
				}
				for i, it := range v {
					im, ok := it.(map[string]any)
					if !ok {
						return fmt.Errorf("release: sw-description: %s.images[%d] is not a group", where, i)
					}
					img, err := swImage(im)
					if err != nil {
						return fmt.Errorf("release: sw-description: %s.images[%d]: %w", where, i, err)
					}
					key := img.Filename + "\x00" + img.SHA256
					if !seen[key] {
						seen[key] = true
						d.Images = append(d.Images, img)
					}
				}
			}
		}
		return nil
	}
	if err := collect(sw, "software"); err != nil {
		return nil, err
	}
	return d, nil
}

func swImage(g map[string]any) (Image, error) {
	str := func(k string) string { s, _ := g[k].(string); return s }
	img := Image{Name: str("name"), Filename: str("filename"), SHA256: strings.ToLower(str("sha256")), Type: str("type"), Version: str("version")}
	if img.Type == "" {
		img.Type = "raw"
	}
	switch c := g["compressed"].(type) {
	case string:
		img.Compressed = c
	case bool:
		if c {
			img.Compressed = "zlib"
		}
	}
	if img.Filename == "" {
		return img, fmt.Errorf("no filename")
	}
	if err := checkFilename(img.Filename); err != nil {
		return img, err
	}
	if img.SHA256 != "" && !isSHA256Hex(img.SHA256) {
		return img, fmt.Errorf("sha256 %q is not a sha256 digest", img.SHA256)
	}
	return img, nil
}
