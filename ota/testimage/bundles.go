package testimage

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func fileSHA256(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func writeFile(t testing.TB, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// RAUCBundle makes a plain RAUC bundle the way rauc bundle does: a
// squashfs holding manifest.raucm and the rootfs image, with a CMS
// signature blob and its 8-byte big-endian size appended (the blob here
// is opaque bytes: Ratatouille does not verify RAUC signatures).
func RAUCBundle(t testing.TB, img, compatible, version string) string {
	t.Helper()
	return raucBundle(t, img, compatible, version, true)
}

// RAUCVerityLike makes a bundle laid out like a RAUC verity bundle as
// far as Ratatouille can see: a squashfs of the images without
// manifest.raucm (verity keeps it in the CMS signature), then the
// signature trailer.
func RAUCVerityLike(t testing.TB, img string) string {
	t.Helper()
	return raucBundle(t, img, "", "", false)
}

func raucBundle(t testing.TB, img, compatible, version string, withManifest bool) string {
	t.Helper()
	RequireTools(t, "mksquashfs")
	content := filepath.Join(t.TempDir(), "bundle")
	base := filepath.Base(img)
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(content, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(content, base), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if withManifest {
		writeManifest(t, content, img, compatible, version, base, len(data))
	}
	out := filepath.Join(t.TempDir(), "update.raucb")
	Run(t, "", "mksquashfs", content, out, "-quiet", "-noappend", "-all-root", "-no-progress")
	sig := []byte("\x30\x82not-a-real-CMS-signature")
	f, err := os.OpenFile(out, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(sig)))
	if _, err := f.Write(append(sig, n[:]...)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

// SWU makes a SWUpdate .swu with cpio -H newc: sw-description first,
// then the image gzip-compressed (its sha256 is of the stored bytes).
func SWU(t testing.TB, img, version string) string {
	t.Helper()
	RequireTools(t, "cpio", "gzip")
	dir := t.TempDir()
	gz := filepath.Join(dir, filepath.Base(img)+".gz")
	Run(t, "", "sh", "-c", fmt.Sprintf("gzip -c -n %q > %q", img, gz))
	writeFile(t, filepath.Join(dir, "sw-description"), fmt.Sprintf(`software =
{
	version = "%s";
	description = "Firmware update " /* concatenated */ "for tests";
	hardware-compatibility: [ "1.0", "1.2" ];
	images: (
		{
			filename = "%s";
			device = "/dev/mmcblk0p2";
			type = "raw";
			compressed = "zlib";
			sha256 = "%s";
		}
	);
	scripts: (
		{ filename = "post.sh"; type = "shellscript"; }
	);
};
`, version, filepath.Base(gz), fileSHA256(t, gz)))
	writeFile(t, filepath.Join(dir, "post.sh"), "#!/bin/sh\n")
	out := filepath.Join(t.TempDir(), "update.swu")
	Run(t, dir, "sh", "-c", fmt.Sprintf("printf 'sw-description\\n%s\\npost.sh\\n' | cpio -o -H newc --quiet > %q", filepath.Base(gz), out))
	return out
}

// Mender makes a Mender v3 artifact with tar, as mender-artifact write
// rootfs-image lays it out: version, manifest, header.tar.gz, data/0000.tar.gz.
func Mender(t testing.TB, img, name, deviceType string) string {
	t.Helper()
	RequireTools(t, "tar", "gzip", "sha256sum")
	dir := t.TempDir()
	base := filepath.Base(img)
	writeFile(t, filepath.Join(dir, "version"), `{"format": "mender", "version": 3}`)
	hdr := filepath.Join(t.TempDir(), "hdr")
	writeFile(t, filepath.Join(hdr, "header-info"), fmt.Sprintf(`{"payloads":[{"type":"rootfs-image"}],"artifact_provides":{"artifact_name":%q},"artifact_depends":{"device_type":[%q]}}`, name, deviceType))
	writeFile(t, filepath.Join(hdr, "headers/0000/type-info"), fmt.Sprintf(`{"type":"rootfs-image","artifact_provides":{"rootfs-image.checksum":%q,"rootfs-image.version":%q}}`, fileSHA256(t, img), name))
	writeFile(t, filepath.Join(hdr, "headers/0000/meta-data"), `{}`)
	Run(t, hdr, "tar", "--numeric-owner", "-czf", filepath.Join(dir, "header.tar.gz"), "header-info", "headers")
	payload := filepath.Join(t.TempDir(), "payload")
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(payload, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(payload, base), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	Run(t, payload, "tar", "--numeric-owner", "-czf", filepath.Join(dir, "data/0000.tar.gz"), base)
	writeFile(t, filepath.Join(dir, "manifest"), fmt.Sprintf("%s  data/0000/%s\n%s  header.tar.gz\n%s  version\n",
		fileSHA256(t, img), base, fileSHA256(t, filepath.Join(dir, "header.tar.gz")), fileSHA256(t, filepath.Join(dir, "version"))))
	out := filepath.Join(t.TempDir(), "release.mender")
	Run(t, dir, "tar", "--numeric-owner", "--format=ustar", "-cf", out, "version", "manifest", "header.tar.gz", "data/0000.tar.gz")
	return out
}

func writeManifest(t testing.TB, content, img, compatible, version, base string, size int) {
	t.Helper()
	writeFile(t, filepath.Join(content, "manifest.raucm"), fmt.Sprintf(`[update]
compatible=%s
version=%s
description=test release

[bundle]
format=plain

[image.rootfs]
sha256=%s
size=%d
filename=%s
`, compatible, version, fileSHA256(t, img), size, base))
}
