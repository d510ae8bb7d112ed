package release

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/ratatouille/rat/ota/rootfs"
)

const seedManifest = `[update]
compatible=rat-board
version=2026.12.1

[bundle]
format=plain

[image.rootfs]
sha256=0f343b0931126a20f133d67c2b018a3b5b0e1a0b3c0f2a44b8d1b0c5e2d3f4a5
size=1024
filename=rootfs.ext4
`

const seedSWDesc = `software =
{
	version = "0.1.0";
	hardware-compatibility: [ "1.0" ];
	myboard = { stable = { copy1 : { images: ( { filename = "rootfs.ext4.gz"; sha256 = "0f343b0931126a20f133d67c2b018a3b5b0e1a0b3c0f2a44b8d1b0c5e2d3f4a5"; compressed = true; } ); }; }; };
	images: ( { name = "rootfs"; filename = "rootfs.ext4"; type = "raw"; version = "1" "." "2"; } );
};
`

func FuzzParseRAUCManifest(f *testing.F) {
	f.Add([]byte(seedManifest))
	f.Add([]byte("[update]\ncompatible=x\n[image.a]\nfilename=../etc/passwd\n"))
	f.Add([]byte("[update]\ncompatible=x\ncompatible=y\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseRAUCManifest(data)
		if err != nil {
			return
		}
		if m.Compatible == "" {
			t.Fatal("accepted a manifest without compatible")
		}
		for _, im := range m.Images {
			if checkFilename(im.Filename) != nil || !isSHA256Hex(im.SHA256) {
				t.Fatalf("accepted image %+v", im)
			}
		}
	})
}

func FuzzParseSWDescription(f *testing.F) {
	f.Add([]byte(seedSWDesc))
	f.Add([]byte(`{"software": {"version": "1.0", "images": [{"filename": "a.img", "sha256": "` + "0f343b0931126a20f133d67c2b018a3b5b0e1a0b3c0f2a44b8d1b0c5e2d3f4a5" + `"}]}}`))
	f.Add([]byte(`software = { version = "a\x41\"b"; /* unterminated`))
	f.Add([]byte(`software = ((((((((((((((((((((((((((((((((((((((((1))))))))))))))))))))))))))))))))))))))));`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseSWDescription(data)
		if err != nil {
			return
		}
		for _, im := range d.Images {
			if checkFilename(im.Filename) != nil || (im.SHA256 != "" && !isSHA256Hex(im.SHA256)) {
				t.Fatalf("accepted image %+v", im)
			}
		}
	})
}

func FuzzReadCPIO(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("testdata", "seed.swu")); err == nil {
		f.Add(b)
	}
	f.Add([]byte("070701" + "00000000000081a4000000000000000000000001000000000000000400000000000000000000000000000000000000020000000000" + "a\x00\x00\x00" + "data"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ents, err := readCPIO(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		for _, e := range ents {
			if e.Offset < 0 || e.Size < 0 || e.Offset+e.Size > int64(len(data)) {
				t.Fatalf("entry %+v outside the %d-byte archive", e, len(data))
			}
		}
	})
}

func FuzzParseMender(f *testing.F) {
	f.Add([]byte(`{"payloads":[{"type":"rootfs-image"}],"artifact_provides":{"artifact_name":"r1"},"artifact_depends":{"device_type":["pi"]}}`),
		[]byte("0f343b0931126a20f133d67c2b018a3b5b0e1a0b3c0f2a44b8d1b0c5e2d3f4a5  data/0000/rootfs.ext4\n0f343b0931126a20f133d67c2b018a3b5b0e1a0b3c0f2a44b8d1b0c5e2d3f4a5  version\n"))
	f.Add([]byte(`{"artifact_provides":{"artifact_name":""}}`), []byte("zz  x\n"))
	f.Fuzz(func(t *testing.T, headerInfo, manifest []byte) {
		if h, err := ParseMenderHeaderInfo(headerInfo); err == nil && (h.ArtifactName == "" || len(h.DeviceTypes) == 0) {
			t.Fatalf("accepted header-info without name or device types: %+v", h)
		}
		if m, err := ParseMenderManifest(manifest); err == nil {
			for n, d := range m {
				if n == "" || !isSHA256Hex(d) {
					t.Fatalf("accepted manifest line %q %q", d, n)
				}
			}
		}
		_ = parseMenderVersion(headerInfo)
		_, _ = parseMenderTypeInfo(headerInfo)
		_, _ = parseMenderHeaderTar(manifest)
	})
}

// FuzzOpen runs whole artifacts (cpio, tar, squashfs headers) through
// Open: no panic, and nothing accepted whose declared image digest fails.
func FuzzOpen(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("testdata", "seed.swu")); err == nil {
		f.Add(b)
	}
	f.Add([]byte("070701junk"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "a")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := Open(p, WithVersion("1"), WithTempDir(dir), WithMaxImageSize(1<<20))
		if err != nil {
			return
		}
		if rd, err := r.OpenRootfs(); err == nil {
			_ = rd.Walk(func(rootfs.Entry) error { return nil })
		}
		r.Close()
	})
}
