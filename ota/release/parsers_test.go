package release

import (
	"slices"
	"strings"
	"testing"
)

const d64 = "0f343b0931126a20f133d67c2b018a3b5b0e1a0b3c0f2a44b8d1b0c5e2d3f4a5"

func TestParseRAUCManifestCases(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string
		check   func(*RAUCManifest) bool
	}{
		{"plain", seedManifest, "", func(m *RAUCManifest) bool {
			return m.Compatible == "rat-board" && m.Version == "2026.12.1" && m.Format == "plain" && len(m.Images) == 1 &&
				m.Images[0] == Image{Name: "rootfs", Filename: "rootfs.ext4", SHA256: d64, Size: 1024, Type: "rootfs"}
		}},
		{"default format, two images in order", "[update]\ncompatible=c\nversion=1\n# comment\n[image.rootfs]\nfilename=r.img\nsha256=" + strings.ToUpper(d64) + "\n[image.appfs]\nfilename=a.img\nsha256=" + d64 + "\n", "", func(m *RAUCManifest) bool {
			return m.Format == "plain" && len(m.Images) == 2 && m.Images[0].Name == "rootfs" && m.Images[1].Name == "appfs" && m.Images[0].SHA256 == d64
		}},
		{"verity", "[update]\ncompatible=c\n[bundle]\nformat=verity\n", "", func(m *RAUCManifest) bool { return m.Format == "verity" }},
		{"no update group", "[bundle]\nformat=plain\n", "no [update]", nil},
		{"no compatible", "[update]\nversion=1\n", "no compatible", nil},
		{"path as filename", "[update]\ncompatible=c\n[image.rootfs]\nfilename=../x\nsha256=" + d64 + "\n", "not a plain file name", nil},
		{"bad digest", "[update]\ncompatible=c\n[image.rootfs]\nfilename=x\nsha256=abc\n", "not a sha256", nil},
		{"bad size", "[update]\ncompatible=c\n[image.rootfs]\nfilename=x\nsha256=" + d64 + "\nsize=-1\n", "size", nil},
		{"duplicate key", "[update]\ncompatible=a\ncompatible=b\n", "repeated", nil},
		{"duplicate group", "[update]\ncompatible=a\n[update]\n", "repeated", nil},
		{"key outside group", "compatible=a\n", "inside a [group]", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseRAUCManifest([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !tc.check(m) {
				t.Fatalf("%+v, %v", m, err)
			}
		})
	}
}

func TestParseSWDescriptionCases(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		wantErr   string
		version   string
		hw        []string
		filenames []string
	}{
		{"libconfig with board groups and concatenation", seedSWDesc, "", "0.1.0", []string{"1.0"}, []string{"rootfs.ext4", "rootfs.ext4.gz"}},
		{"json form", `{"software": {"version": "2.0", "hardware-compatibility": ["rev1"], "images": [{"filename": "a.img", "sha256": "` + d64 + `"}]}}`, "", "2.0", []string{"rev1"}, []string{"a.img"}},
		{"comments", "# c\n// c\nsoftware = { /* c */ version = \"3\"; images: ( { filename = \"x\"; } ); };", "", "3", nil, []string{"x"}},
		{"no software", `other = { version = "1"; };`, "no software group", "", nil, nil},
		{"image path", `software = { images: ( { filename = "/etc/passwd"; } ); };`, "not a plain file name", "", nil, nil},
		{"image without filename", `software = { images: ( { type = "raw"; } ); };`, "no filename", "", nil, nil},
		{"bad digest", `software = { images: ( { filename = "a"; sha256 = "zz"; } ); };`, "not a sha256", "", nil, nil},
		{"unterminated string", `software = { version = "1; };`, "unterminated", "", nil, nil},
		{"duplicate setting", `software = { version = "1"; version = "2"; };`, "repeated", "", nil, nil},
		{"too deep", "software = " + strings.Repeat("(", 40) + strings.Repeat(")", 40) + ";", "nested deeper", "", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := ParseSWDescription([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, im := range d.Images {
				names = append(names, im.Filename)
			}
			slices.Sort(names)
			if d.Version != tc.version || !slices.Equal(d.HardwareCompatibility, tc.hw) || !slices.Equal(names, tc.filenames) {
				t.Fatalf("got %+v", d)
			}
		})
	}
	d, err := ParseSWDescription([]byte(seedSWDesc))
	if err != nil {
		t.Fatal(err)
	}
	for _, im := range d.Images {
		if im.Filename == "rootfs.ext4" && (im.Version != "1.2" || im.Type != "raw" || im.Name != "rootfs") {
			t.Errorf("image %+v", im)
		}
		if im.Filename == "rootfs.ext4.gz" && (im.Compressed != "zlib" || im.SHA256 != d64) {
			t.Errorf("image %+v", im)
		}
	}
}

func TestParseMenderCases(t *testing.T) {
	h, err := ParseMenderHeaderInfo([]byte(`{"payloads":[{"type":"rootfs-image"}],"artifact_provides":{"artifact_name":"r1","artifact_group":"g"},"artifact_depends":{"device_type":["pi","pi4"]}}`))
	if err != nil || h.ArtifactName != "r1" || h.ArtifactGroup != "g" || !slices.Equal(h.DeviceTypes, []string{"pi", "pi4"}) || !slices.Equal(h.PayloadTypes, []string{"rootfs-image"}) {
		t.Fatalf("%+v %v", h, err)
	}
	for _, bad := range []string{`{"artifact_provides":{"artifact_name":"r1"}}`, `{"artifact_depends":{"device_type":["pi"]}}`, `[]`} {
		if _, err := ParseMenderHeaderInfo([]byte(bad)); err == nil {
			t.Errorf("accepted header-info %s", bad)
		}
	}
	m, err := ParseMenderManifest([]byte(d64 + "  data/0000/rootfs.ext4\n" + strings.ToUpper(d64) + "  version\n"))
	if err != nil || m["data/0000/rootfs.ext4"] != d64 || m["version"] != d64 {
		t.Fatalf("%v %v", m, err)
	}
	for _, bad := range []string{"", "abc  version\n", d64 + "\n", d64 + "  version\n" + d64 + "  version\n"} {
		if _, err := ParseMenderManifest([]byte(bad)); err == nil {
			t.Errorf("accepted manifest %q", bad)
		}
	}
	for in, ok := range map[string]bool{`{"format":"mender","version":3}`: true, `{"format":"mender","version":2}`: false, `{"format":"x","version":3}`: false, `x`: false} {
		if err := parseMenderVersion([]byte(in)); (err == nil) != ok {
			t.Errorf("version %s: %v", in, err)
		}
	}
}
