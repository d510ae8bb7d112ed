package release

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// MenderHeader is what Ratatouille needs of a Mender v3 artifact header.
type MenderHeader struct {
	ArtifactName  string
	ArtifactGroup string
	DeviceTypes   []string
	PayloadTypes  []string
	// Provides merges each payload's type-info artifact_provides (for
	// example "rootfs-image.version").
	Provides map[string]string
}

type menderVersion struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
}

// parseMenderVersion checks the artifact's "version" file: only format
// "mender" version 3 is read (v2 lacks artifact_provides; refusing it is
// clearer than guessing).
func parseMenderVersion(data []byte) error {
	var v menderVersion
	if err := json.Unmarshal(data, &v); err != nil {
		return fmt.Errorf("release: mender version: %w", err)
	}
	if v.Format != "mender" || v.Version != 3 {
		return fmt.Errorf("release: mender version: format %q version %d, want mender 3", v.Format, v.Version)
	}
	return nil
}

// ParseMenderManifest reads the artifact's manifest ("<sha256>  <name>"
// lines, sha256sum style) into name → lowercase hex digest.
func ParseMenderManifest(data []byte) (map[string]string, error) {
	if len(data) > maxMetadata {
		return nil, fmt.Errorf("release: mender manifest: %d bytes is too large", len(data))
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		d, name, ok := strings.Cut(line, " ")
		name = strings.TrimLeft(name, " *")
		d = strings.ToLower(d)
		if !ok || !isSHA256Hex(d) || name == "" {
			return nil, fmt.Errorf("release: mender manifest line %d: want \"<sha256>  <name>\"", n)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("release: mender manifest line %d: %s listed twice", n, name)
		}
		out[name] = d
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("release: mender manifest: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("release: mender manifest is empty")
	}
	return out, nil
}

type menderHeaderInfo struct {
	Payloads []struct {
		Type string `json:"type"`
	} `json:"payloads"`
	Provides struct {
		Name  string `json:"artifact_name"`
		Group string `json:"artifact_group"`
	} `json:"artifact_provides"`
	Depends struct {
		DeviceType []string `json:"device_type"`
	} `json:"artifact_depends"`
}

// ParseMenderHeaderInfo reads header-info (v3): payload types, the
// provided artifact name and group, and the device types it depends on.
func ParseMenderHeaderInfo(data []byte) (*MenderHeader, error) {
	if len(data) > maxMetadata {
		return nil, fmt.Errorf("release: mender header-info: %d bytes is too large", len(data))
	}
	var hi menderHeaderInfo
	if err := json.Unmarshal(data, &hi); err != nil {
		return nil, fmt.Errorf("release: mender header-info: %w", err)
	}
	if hi.Provides.Name == "" {
		return nil, fmt.Errorf("release: mender header-info: no artifact_provides.artifact_name")
	}
	if len(hi.Depends.DeviceType) == 0 {
		// Mender refuses artifacts without device types: they would
		// install anywhere.
		return nil, fmt.Errorf("release: mender header-info: no artifact_depends.device_type")
	}
	h := &MenderHeader{ArtifactName: hi.Provides.Name, ArtifactGroup: hi.Provides.Group, DeviceTypes: hi.Depends.DeviceType, Provides: map[string]string{}}
	for _, p := range hi.Payloads {
		h.PayloadTypes = append(h.PayloadTypes, p.Type)
	}
	return h, nil
}

type menderTypeInfo struct {
	Type     string            `json:"type"`
	Provides map[string]string `json:"artifact_provides"`
}

func parseMenderTypeInfo(data []byte) (*menderTypeInfo, error) {
	var ti menderTypeInfo
	if err := json.Unmarshal(data, &ti); err != nil {
		return nil, fmt.Errorf("release: mender type-info: %w", err)
	}
	return &ti, nil
}
