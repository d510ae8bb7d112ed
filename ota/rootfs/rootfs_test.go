package rootfs_test

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"maps"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/ratatouille/rat/ota/rootfs"
	"github.com/ratatouille/rat/ota/testimage"
)

// walkAll hashes every regular file of r and records symlinks, hard links.
func walkAll(t *testing.T, r rootfs.Reader) (sums map[string]string, links map[string]string, hard map[string]string, idx *rootfs.Index) {
	t.Helper()
	sums, links, hard, idx = map[string]string{}, map[string]string{}, map[string]string{}, rootfs.NewIndex()
	err := r.Walk(func(e rootfs.Entry) error {
		idx.Add(e)
		switch {
		case e.Link != "":
			hard[e.Path] = e.Link
		case e.IsRegular():
			rc, err := e.Open()
			if err != nil {
				return err
			}
			defer rc.Close()
			h := sha256.New()
			n, err := io.Copy(h, rc)
			if err != nil {
				return err
			}
			if n != e.Size {
				t.Errorf("%s: read %d bytes, size says %d", e.Path, n, e.Size)
			}
			sums[e.Path] = hex.EncodeToString(h.Sum(nil))
		case e.IsSymlink():
			links[e.Path] = e.Target
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", r.Type(), err)
	}
	return
}

func TestReadersAgainstSha256sum(t *testing.T) {
	src := testimage.Source(t)
	want := testimage.Sha256Sums(t, src)
	images := []struct {
		name     string
		path     func() string
		wantType rootfs.Type
	}{
		{"dir", func() string { return src }, rootfs.TypeDir},
		{"tar", func() string { return testimage.Tar(t, src, "") }, rootfs.TypeTar},
		{"tar.gz", func() string { return testimage.Tar(t, src, "gzip") }, rootfs.TypeTar},
		{"tar.xz", func() string { return testimage.Tar(t, src, "xz") }, rootfs.TypeTar},
		{"tar.zst", func() string { return testimage.Tar(t, src, "zstd") }, rootfs.TypeTar},
		{"squashfs-gzip", func() string { return testimage.Squashfs(t, src, "gzip") }, rootfs.TypeSquashfs},
		{"squashfs-xz", func() string { return testimage.Squashfs(t, src, "xz") }, rootfs.TypeSquashfs},
		{"squashfs-zstd", func() string { return testimage.Squashfs(t, src, "zstd") }, rootfs.TypeSquashfs},
		{"ext4-1k", func() string { return testimage.Ext4(t, src) }, rootfs.TypeExt4},
	}
	for _, im := range images {
		t.Run(im.name, func(t *testing.T) {
			r, err := rootfs.Open(im.path())
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if r.Type() != im.wantType {
				t.Fatalf("type %s, want %s", r.Type(), im.wantType)
			}
			sums, links, hard, idx := walkAll(t, r)
			// Hard links: tar stores a link entry, file systems a second name.
			for p, of := range hard {
				if of != testimage.Layout.HardLinkOf && p != testimage.Layout.HardLinkOf {
					t.Errorf("hard link %s -> %s unexpected", p, of)
				}
				sums[p] = sums[of]
			}
			for p, d := range want {
				if sums[p] != d {
					t.Errorf("%s: digest %q, sha256sum says %s", p, sums[p], d)
				}
			}
			for p := range sums {
				if _, ok := want[p]; !ok {
					t.Errorf("%s: read a file sha256sum did not see", p)
				}
			}
			for l, target := range testimage.Layout.FileLinks {
				if links[l] != target {
					t.Errorf("symlink %s -> %q, want %q", l, links[l], target)
				}
			}
			for l, target := range testimage.Layout.DirLinks {
				if links[l] != target {
					t.Errorf("symlink %s -> %q, want %q", l, links[l], target)
				}
			}
			if got, err := idx.Resolve("/bin/dir"); err != nil || got != "/usr/bin/ls" {
				t.Errorf("resolve /bin/dir = %q, %v; want /usr/bin/ls", got, err)
			}
			if e, ok := idx.Lookup("/usr/bin/ls"); !ok || e.Mode.Perm() != 0o755 {
				t.Errorf("/usr/bin/ls mode %v", e.Mode)
			}
		})
	}
}

// TestExt4HoledFileReallyHoled proves the ext4 fixture exercises holes:
// the holed file occupies far fewer 1 KiB blocks than its size.
func TestExt4HoledFileReallyHoled(t *testing.T) {
	testimage.RequireTools(t, "debugfs")
	src := testimage.Source(t)
	img := testimage.Ext4(t, src)
	out := testimage.Run(t, "", "debugfs", "-R", "blocks "+testimage.Layout.Holed, img)
	blocks := strings.Fields(string(out))
	if len(blocks) == 0 || len(blocks) > 16 {
		t.Fatalf("holed file uses %d blocks of 1 KiB (size %d): fixture has no holes", len(blocks), testimage.HoledSize)
	}
	for _, b := range blocks {
		if _, err := strconv.Atoi(b); err != nil {
			t.Fatalf("debugfs output %q", out)
		}
	}
}

func TestResolve(t *testing.T) {
	idx := rootfs.NewIndex()
	for _, e := range []rootfs.Entry{
		{Path: "/usr", Mode: os.ModeDir | 0o755},
		{Path: "/usr/bin", Mode: os.ModeDir | 0o755},
		{Path: "/usr/bin/sh", Mode: 0o755},
		{Path: "/bin", Mode: os.ModeSymlink, Target: "usr/bin"},
		{Path: "/usr/bin/abs", Mode: os.ModeSymlink, Target: "/bin/sh"},
		{Path: "/usr/bin/up", Mode: os.ModeSymlink, Target: "../../../../usr/bin/sh"},
		{Path: "/loop1", Mode: os.ModeSymlink, Target: "loop2"},
		{Path: "/loop2", Mode: os.ModeSymlink, Target: "/loop1"},
		{Path: "/dangling", Mode: os.ModeSymlink, Target: "nowhere"},
	} {
		idx.Add(e)
	}
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{"/usr/bin/sh", "/usr/bin/sh", false},
		{"/bin/sh", "/usr/bin/sh", false},
		{"/usr/bin/abs", "/usr/bin/sh", false},
		{"/usr/bin/up", "/usr/bin/sh", false},
		{"/bin/../bin/sh", "/usr/bin/sh", false},
		{"/loop1", "", true},
		{"/dangling", "", true},
		{"/usr/bin/sh/x", "", true},
	}
	for _, tc := range tests {
		got, err := idx.Resolve(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("Resolve(%q) = %q, %v; want %q (error %v)", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
	al := idx.Aliases()
	for alias, canon := range map[string]string{"/bin/sh": "/usr/bin/sh", "/usr/bin/abs": "/usr/bin/sh", "/usr/bin/up": "/usr/bin/sh"} {
		if al[alias] != canon {
			t.Errorf("alias %s -> %q, want %s", alias, al[alias], canon)
		}
	}
	if _, ok := al["/dangling"]; ok {
		t.Error("dangling link aliased")
	}
}

func TestOpenRejects(t *testing.T) {
	dir := t.TempDir()
	junk := dir + "/junk.img"
	if err := os.WriteFile(junk, []byte(strings.Repeat("not an image", 200)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := rootfs.Open(junk); err == nil {
		t.Fatal("junk opened as image")
	}
	if _, err := rootfs.Open(dir + "/missing"); err == nil {
		t.Fatal("missing file opened")
	}
}

func TestParseOSRelease(t *testing.T) {
	tests := []struct {
		in      string
		want    map[string]string
		wantErr bool
	}{
		{"NAME=\"Rat OS\"\nVERSION_ID=2026.12\nIMAGE_VERSION='2026.12.1'\n# c\n\n", map[string]string{"NAME": "Rat OS", "VERSION_ID": "2026.12", "IMAGE_VERSION": "2026.12.1"}, false},
		{`PRETTY_NAME="a \"b\" \\ c"`, map[string]string{"PRETTY_NAME": `a "b" \ c`}, false},
		{"EMPTY=\n", map[string]string{"EMPTY": ""}, false},
		{"NAME=\"unterminated\n", nil, true},
		{"NAME=two words\n", nil, true},
		{"no equals\n", nil, true},
		{"X='a'b'\n", nil, true},
	}
	for _, tc := range tests {
		got, err := rootfs.ParseOSRelease([]byte(tc.in))
		if (err != nil) != tc.wantErr {
			t.Errorf("%q: error %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if !tc.wantErr && !maps.Equal(got, tc.want) {
			t.Errorf("%q: %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestDirRootSymlinkAndX11(t *testing.T) {
	dir := t.TempDir()
	real := dir + "/real"
	if err := os.MkdirAll(real+"/usr/bin", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(real+"/usr/bin/sh", []byte("#!"), 0o755); err != nil {
		t.Fatal(err)
	}
	for l, target := range map[string]string{real + "/usr/bin/X11": ".", real + "/bin": "usr/bin", dir + "/link": "real"} {
		if err := os.Symlink(target, l); err != nil {
			t.Fatal(err)
		}
	}
	r, err := rootfs.Open(dir + "/link")
	if err != nil {
		t.Fatal(err)
	}
	idx := rootfs.NewIndex()
	if err := r.Walk(func(e rootfs.Entry) error { idx.Add(e); return nil }); err != nil {
		t.Fatal(err)
	}
	if got := idx.Regular(); len(got) != 1 || got[0] != "/usr/bin/sh" {
		t.Fatalf("walk through a symlinked root: %v", got)
	}
	al := idx.Aliases()
	if al["/bin/sh"] != "/usr/bin/sh" {
		t.Errorf("usr-merge alias missing: %v", al)
	}
	if _, ok := al["/usr/bin/X11/sh"]; ok {
		t.Errorf("nested directory link aliased: %v", al)
	}
}
