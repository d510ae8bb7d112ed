package rootfs

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// OSReleasePaths are where os-release(5) lives; /etc/os-release is
// usually a symlink to ../usr/lib/os-release.
var OSReleasePaths = []string{"/etc/os-release", "/usr/lib/os-release"}

// MaxOSRelease bounds an os-release file read into memory.
const MaxOSRelease = 64 << 10

// ParseOSRelease reads os-release(5): KEY=value lines, values optionally
// in single or double quotes with backslash escapes inside double quotes,
// # comments. Devices report their release from VERSION_ID or
// IMAGE_VERSION, so the release registered for an image must equal what
// the image's own os-release will make its devices report.
func ParseOSRelease(data []byte) (map[string]string, error) {
	if len(data) > MaxOSRelease {
		return nil, fmt.Errorf("rootfs: os-release: %d bytes is too large", len(data))
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t\"'") {
			return nil, fmt.Errorf("rootfs: os-release line %d: want KEY=value", n)
		}
		val, err := unquoteOSRelease(v)
		if err != nil {
			return nil, fmt.Errorf("rootfs: os-release line %d: %w", n, err)
		}
		out[k] = val
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("rootfs: os-release: %w", err)
	}
	return out, nil
}

func unquoteOSRelease(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	switch q := v[0]; q {
	case '\'':
		if len(v) < 2 || v[len(v)-1] != '\'' || strings.Contains(v[1:len(v)-1], "'") {
			return "", fmt.Errorf("unbalanced single quotes")
		}
		return v[1 : len(v)-1], nil
	case '"':
		if len(v) < 2 || v[len(v)-1] != '"' {
			return "", fmt.Errorf("unbalanced double quotes")
		}
		var b strings.Builder
		in := v[1 : len(v)-1]
		for i := 0; i < len(in); i++ {
			c := in[i]
			switch {
			case c == '\\':
				if i+1 >= len(in) {
					return "", fmt.Errorf("trailing backslash")
				}
				i++
				b.WriteByte(in[i])
			case c == '"':
				return "", fmt.Errorf("unescaped double quote")
			default:
				b.WriteByte(c)
			}
		}
		return b.String(), nil
	}
	if strings.ContainsAny(v, " \t\"'\\$`") {
		return "", fmt.Errorf("unquoted value %q has shell metacharacters", v)
	}
	return v, nil
}
