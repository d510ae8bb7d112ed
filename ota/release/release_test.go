package release_test

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ratatouille/rat/ota/release"
	"github.com/ratatouille/rat/ota/rootfs"
	"github.com/ratatouille/rat/ota/testimage"
)

// checkRootfs walks r and compares every regular file with sha256sum.
func checkRootfs(t *testing.T, rd rootfs.Reader, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	hard := map[string]string{}
	err := rd.Walk(func(e rootfs.Entry) error {
		if e.Link != "" {
			hard[e.Path] = e.Link
			return nil
		}
		if !e.IsRegular() {
			return nil
		}
		rc, err := e.Open()
		if err != nil {
			return err
		}
		defer rc.Close()
		h := sha256.New()
		if _, err := io.Copy(h, rc); err != nil {
			return err
		}
		got[e.Path] = hex.EncodeToString(h.Sum(nil))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for p, of := range hard {
		got[p] = got[of]
	}
	if len(got) != len(want) {
		t.Errorf("rootfs has %d files, sha256sum saw %d", len(got), len(want))
	}
	for p, d := range want {
		if got[p] != d {
			t.Errorf("%s: %q, sha256sum %s", p, got[p], d)
		}
	}
}

func fileDigest(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestFormats(t *testing.T) {
	src := testimage.Source(t)
	want := testimage.Sha256Sums(t, src)
	ext4 := testimage.Ext4(t, src)
	sqfs := testimage.Squashfs(t, src, "xz")
	tgz := testimage.Tar(t, src, "gzip")
	tests := []struct {
		name           string
		artifact       string
		opts           []release.Option
		wantFormat     release.Format
		wantVersion    string
		wantCompatible []string
		wantImage      string
		wantName       string
	}{
		{name: "rauc ext4", artifact: testimage.RAUCBundle(t, ext4, "rat-board", "2026.12.1"), wantFormat: release.FormatRAUC, wantVersion: "2026.12.1", wantCompatible: []string{"rat-board"}, wantImage: "rootfs.ext4"},
		{name: "rauc squashfs", artifact: testimage.RAUCBundle(t, sqfs, "rat-board", "2026.12.2"), opts: []release.Option{release.WithVersion("2026.12.2")}, wantFormat: release.FormatRAUC, wantVersion: "2026.12.2", wantCompatible: []string{"rat-board"}, wantImage: filepath.Base(sqfs)},
		{name: "swupdate", artifact: testimage.SWU(t, ext4, "1.4.0"), wantFormat: release.FormatSWUpdate, wantVersion: "1.4.0", wantCompatible: []string{"1.0", "1.2"}, wantImage: "rootfs.ext4.gz"},
		{name: "mender", artifact: testimage.Mender(t, ext4, "release-7", "raspberrypi4"), wantFormat: release.FormatMender, wantVersion: "release-7", wantCompatible: []string{"raspberrypi4"}, wantImage: "rootfs.ext4", wantName: "release-7"},
		{name: "mender tar.gz payload", artifact: testimage.Mender(t, tgz, "release-8", "qemux86-64"), wantFormat: release.FormatMender, wantVersion: "release-8", wantCompatible: []string{"qemux86-64"}, wantImage: "rootfs.tar.gz", wantName: "release-8"},
		{name: "bare ext4", artifact: ext4, opts: []release.Option{release.WithVersion("9")}, wantFormat: release.FormatImage, wantVersion: "9", wantImage: "rootfs.ext4"},
		{name: "bare squashfs", artifact: sqfs, opts: []release.Option{release.WithVersion("9")}, wantFormat: release.FormatImage, wantVersion: "9", wantImage: filepath.Base(sqfs)},
		{name: "bare tar.zst", artifact: testimage.Tar(t, src, "zstd"), opts: []release.Option{release.WithVersion("9")}, wantFormat: release.FormatImage, wantVersion: "9", wantImage: "rootfs.tar.zst"},
		{name: "bare tar.gz", artifact: tgz, opts: []release.Option{release.WithVersion("9")}, wantFormat: release.FormatImage, wantVersion: "9", wantImage: "rootfs.tar.gz"},
		{name: "directory", artifact: src, opts: []release.Option{release.WithVersion("dev")}, wantFormat: release.FormatImage, wantVersion: "dev"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := append([]release.Option{release.WithTempDir(t.TempDir())}, tc.opts...)
			r, err := release.Open(tc.artifact, opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if r.Format != tc.wantFormat || r.Version != tc.wantVersion || !slices.Equal(r.Compatible, tc.wantCompatible) || r.RootfsImage != tc.wantImage || r.Name != tc.wantName {
				t.Fatalf("got format %s version %q compatible %v image %q name %q", r.Format, r.Version, r.Compatible, r.RootfsImage, r.Name)
			}
			if tc.wantFormat != release.FormatImage || tc.artifact != src {
				if r.Digest != fileDigest(t, tc.artifact) {
					t.Errorf("artifact digest %s", r.Digest)
				}
			}
			rd, err := r.OpenRootfs()
			if err != nil {
				t.Fatal(err)
			}
			defer rd.Close()
			checkRootfs(t, rd, want)
		})
	}
}

func TestRefusals(t *testing.T) {
	src := testimage.Source(t)
	ext4 := testimage.Ext4(t, src)
	dir := t.TempDir()

	// A .swu whose image bytes were changed after sw-description was written.
	swu := testimage.SWU(t, ext4, "1.0")
	b, err := os.ReadFile(swu)
	if err != nil {
		t.Fatal(err)
	}
	i := len(b) / 2
	b[i] ^= 0xff
	tampered := filepath.Join(dir, "tampered.swu")
	if err := os.WriteFile(tampered, b, 0o644); err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(dir, "junk.bin")
	if err := os.WriteFile(junk, []byte(strings.Repeat("junk", 1000)), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		artifact string
		opts     []release.Option
		wantErr  string
	}{
		{"swu image tampered", tampered, nil, "declares"},
		{"version mismatch", testimage.Mender(t, ext4, "release-1", "pi"), []release.Option{release.WithVersion("release-2")}, "not the"},
		{"bare image without version", ext4, nil, "version"},
		{"directory without version", src, nil, "version"},
		{"not an artifact", junk, []release.Option{release.WithVersion("1")}, "unknown image format"},
		{"no such image", testimage.RAUCBundle(t, ext4, "b", "1"), []release.Option{release.WithImage("appfs")}, "no image"},
		{"verity-like bundle", testimage.RAUCVerityLike(t, ext4), []release.Option{release.WithVersion("1")}, "CMS signature"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := release.Open(tc.artifact, tc.opts...)
			if err == nil {
				r.Close()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %q, want it to say %q", err, tc.wantErr)
			}
		})
	}
}

// TestUnpackLimit: an image larger than the unpack limit is refused
// rather than written out.
func TestUnpackLimit(t *testing.T) {
	src := testimage.Source(t)
	art := testimage.RAUCBundle(t, testimage.Ext4(t, src), "b", "1")
	r, err := release.Open(art, release.WithMaxImageSize(1<<20), release.WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.OpenRootfs(); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("got %v, want the unpack limit", err)
	}
}
