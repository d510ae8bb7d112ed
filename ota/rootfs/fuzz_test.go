package rootfs_test

import (
	"archive/tar"
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/ratatouille/rat/ota/rootfs"
)

func tinyTar(f *testing.F) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range []*tar.Header{
		{Name: "./usr/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "./usr/bin/sh", Typeflag: tar.TypeReg, Mode: 0o755, Size: 4},
		{Name: "./bin", Typeflag: tar.TypeSymlink, Linkname: "usr/bin"},
		{Name: "./usr/bin/sh2", Typeflag: tar.TypeLink, Linkname: "./usr/bin/sh"},
		{Name: "../../escape", Typeflag: tar.TypeReg, Mode: 0o644, Size: 0},
	} {
		if err := tw.WriteHeader(h); err != nil {
			f.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte("\x7fELF"))
		}
	}
	tw.Close()
	return b.Bytes()
}

// FuzzTar feeds arbitrary bytes to the sniffer and the tar walker: no
// panic, every path absolute and clean, no content read past its size.
func FuzzTar(f *testing.F) {
	f.Add(tinyTar(f))
	f.Add([]byte{0x1f, 0x8b, 0, 0})
	f.Add([]byte("\xfd7zXZ\x00garbage"))
	f.Add([]byte("\x28\xb5\x2f\xfdgarbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = rootfs.Sniff(data)
		r := rootfs.OpenTar(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
		_ = r.Walk(func(e rootfs.Entry) error {
			if e.Path == "" || e.Path[0] != '/' || bytes.Contains([]byte(e.Path), []byte("/../")) {
				t.Fatalf("unclean path %q", e.Path)
			}
			if e.IsRegular() && e.Link == "" {
				rc, err := e.Open()
				if err != nil {
					return err
				}
				n, _ := io.Copy(io.Discard, io.LimitReader(rc, 1<<20))
				if n > e.Size {
					t.Fatalf("%s: read %d > size %d", e.Path, n, e.Size)
				}
			}
			return nil
		})
	})
}

func FuzzParseOSRelease(f *testing.F) {
	f.Add([]byte("NAME=\"Rat OS\"\nVERSION_ID=2026.12\nIMAGE_VERSION='2026.12.1'\n# comment\nPRETTY_NAME=\"Rat \\\"OS\\\"\"\n"))
	f.Add([]byte("ID=debian\nVERSION_ID=\"12\"\n"))
	f.Add([]byte("BAD LINE\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := rootfs.ParseOSRelease(data)
		if err != nil {
			return
		}
		for k := range m {
			if k == "" || strings.ContainsAny(k, " \t\"'=") {
				t.Fatalf("accepted key %q", k)
			}
		}
	})
}
