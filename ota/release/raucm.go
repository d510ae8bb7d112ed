package release

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// maxMetadata bounds every metadata file read into memory (manifests,
// sw-description, header-info): real ones are a few KiB.
const maxMetadata = 1 << 20

// RAUCManifest is what Ratatouille needs of a RAUC manifest.raucm.
type RAUCManifest struct {
	Compatible string
	Version    string
	Build      string
	Format     string // [bundle] format: "plain" (default), "verity", "crypt"
	Images     []Image
}

// ParseRAUCManifest reads a RAUC manifest (GLib key file syntax): the
// [update] compatible and version, the [bundle] format and every
// [image.<slotclass>] with its filename, sha256 and size.
func ParseRAUCManifest(data []byte) (*RAUCManifest, error) {
	if len(data) > maxMetadata {
		return nil, fmt.Errorf("release: rauc manifest: %d bytes is too large", len(data))
	}
	sections, err := parseKeyFile(data)
	if err != nil {
		return nil, fmt.Errorf("release: rauc manifest: %w", err)
	}
	up, ok := sections.get("update")
	if !ok {
		return nil, fmt.Errorf("release: rauc manifest: no [update] section")
	}
	m := &RAUCManifest{Compatible: up["compatible"], Version: up["version"], Build: up["build"], Format: "plain"}
	if m.Compatible == "" {
		// RAUC refuses a manifest without compatible: it is what stops a
		// bundle for one device type installing on another.
		return nil, fmt.Errorf("release: rauc manifest: [update] has no compatible")
	}
	if b, ok := sections.get("bundle"); ok && b["format"] != "" {
		m.Format = b["format"]
	}
	for _, name := range sections.order {
		class, ok := strings.CutPrefix(name, "image.")
		if !ok {
			continue
		}
		kv := sections.m[name]
		img := Image{Name: class, Filename: kv["filename"], SHA256: strings.ToLower(kv["sha256"]), Type: class}
		if img.Filename == "" {
			return nil, fmt.Errorf("release: rauc manifest: [%s] has no filename", name)
		}
		if err := checkFilename(img.Filename); err != nil {
			return nil, fmt.Errorf("release: rauc manifest: [%s]: %w", name, err)
		}
		if !isSHA256Hex(img.SHA256) {
			return nil, fmt.Errorf("release: rauc manifest: [%s] sha256 %q is not a sha256 digest", name, kv["sha256"])
		}
		if s := kv["size"]; s != "" {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("release: rauc manifest: [%s] size %q", name, s)
			}
			img.Size = n
		}
		m.Images = append(m.Images, img)
	}
	return m, nil
}

type keyFile struct {
	order []string
	m     map[string]map[string]string
}

func (k keyFile) get(name string) (map[string]string, bool) {
	v, ok := k.m[name]
	return v, ok
}

// parseKeyFile reads GLib key file syntax: [group] headers, key=value
// lines, # comments. Duplicate groups or keys are refused: which copy
// RAUC would use is not something a policy should guess.
func parseKeyFile(data []byte) (keyFile, error) {
	k := keyFile{m: map[string]map[string]string{}}
	var cur map[string]string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 4096), maxMetadata)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if line[0] == '[' {
			if !strings.HasSuffix(line, "]") || len(line) < 3 {
				return k, fmt.Errorf("line %d: bad group header", n)
			}
			name := line[1 : len(line)-1]
			if _, dup := k.m[name]; dup {
				return k, fmt.Errorf("line %d: group [%s] repeated", n, name)
			}
			cur = map[string]string{}
			k.m[name] = cur
			k.order = append(k.order, name)
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok || cur == nil {
			return k, fmt.Errorf("line %d: want key=value inside a [group]", n)
		}
		key = strings.TrimSpace(key)
		if _, dup := cur[key]; dup {
			return k, fmt.Errorf("line %d: key %q repeated", n, key)
		}
		cur[key] = strings.TrimSpace(val)
	}
	if err := sc.Err(); err != nil {
		return k, err
	}
	return k, nil
}

func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// checkFilename refuses image names that are paths: every format here
// names images relative to the artifact, never outside it.
func checkFilename(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") {
		return fmt.Errorf("image filename %q is not a plain file name", name)
	}
	return nil
}
