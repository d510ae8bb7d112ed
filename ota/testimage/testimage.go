package testimage

import (
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// RequireTools skips the test when a tool is missing, and fails it when
// RAT_REQUIRE_INTEGRATION=1 (CI installs them all).
func RequireTools(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			if os.Getenv("RAT_REQUIRE_INTEGRATION") == "1" {
				t.Fatalf("%s not installed (RAT_REQUIRE_INTEGRATION=1)", n)
			}
			t.Skipf("%s not installed", n)
		}
	}
}

// Run runs a command and fails the test with its output if it fails.
func Run(t testing.TB, dir string, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// Host ELF files copied into the source tree: executables from /usr/bin
// and a shared object (libz, small and not executable-bit, so the exec
// policy must classify it by ELF header, not mode).
var hostELF = map[string][]string{
	"/usr/bin/ls":   {"/usr/bin/ls"},
	"/usr/bin/cat":  {"/usr/bin/cat"},
	"/usr/bin/true": {"/usr/bin/true"},
	"/usr/lib/x86_64-linux-gnu/libz.so.1.2.13": {
		"/usr/lib/x86_64-linux-gnu/libz.so.1.2.13", "/lib/x86_64-linux-gnu/libz.so.1",
		"/usr/lib/aarch64-linux-gnu/libz.so.1", "/usr/lib64/libz.so.1",
	},
}

// Layout names the files of the source tree by role, for assertions.
var Layout = struct {
	Executables, SharedObjects, Modules, Firmware, ExecScripts, PlainScripts, Data []string
	Holed, HardLink, HardLinkOf                                                    string
	FileLinks, DirLinks                                                            map[string]string
}{
	Executables:   []string{"/usr/bin/cat", "/usr/bin/ls", "/usr/bin/true", "/usr/bin/ls2"},
	SharedObjects: []string{"/usr/lib/x86_64-linux-gnu/libz.so.1.2.13"},
	Modules: []string{
		"/usr/lib/modules/6.1.0-rat/kernel/drivers/misc/dummy.ko",
		"/usr/lib/modules/6.1.0-rat/kernel/drivers/misc/dummy2.ko.xz",
	},
	Firmware:     []string{"/usr/lib/firmware/rat/fw.bin"},
	ExecScripts:  []string{"/usr/bin/hello.sh"},
	PlainScripts: []string{"/usr/share/doc/rat/example.sh"},
	Data:         []string{"/etc/motd", "/usr/lib/holed.bin", "/var/lib/rat/state", "/usr/lib/os-release"},
	Holed:        "/usr/lib/holed.bin",
	HardLink:     "/usr/bin/ls2",
	HardLinkOf:   "/usr/bin/ls",
	FileLinks:    map[string]string{"/usr/bin/dir": "ls", "/usr/lib/x86_64-linux-gnu/libz.so.1": "libz.so.1.2.13"},
	DirLinks:     map[string]string{"/bin": "usr/bin", "/lib": "usr/lib", "/sbin": "usr/bin"},
}

// OSVersionID and OSImageVersion are what the source tree's os-release
// (/etc/os-release -> ../usr/lib/os-release) says.
const (
	OSVersionID    = "2026.12"
	OSImageVersion = "2026.12.1"
)

// HoledSize is the apparent size of the holed file: 3 MiB of which only
// a few bytes in the middle and at the end are data.
const HoledSize = 3 << 20

// Source builds the root file system tree in a new temporary directory
// and returns it. It skips (or fails, under RAT_REQUIRE_INTEGRATION) when
// the host has no ELF binaries to copy.
func Source(t testing.TB) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "rootfs")
	write := func(p string, data []byte, mode os.FileMode) {
		t.Helper()
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(full, mode); err != nil {
			t.Fatal(err)
		}
	}
	for dst, candidates := range hostELF {
		var data []byte
		for _, c := range candidates {
			if b, err := os.ReadFile(c); err == nil {
				data = b
				break
			}
		}
		if data == nil {
			if os.Getenv("RAT_REQUIRE_INTEGRATION") == "1" {
				t.Fatalf("host has none of %v to copy", candidates)
			}
			t.Skipf("host has none of %v to copy", candidates)
		}
		mode := os.FileMode(0o755)
		if strings.Contains(dst, ".so") {
			mode = 0o644
		}
		write(dst, data, mode)
	}
	ls, err := os.ReadFile(filepath.Join(root, "usr/bin/ls"))
	if err != nil {
		t.Fatal(err)
	}
	// Modules: one uncompressed, one xz-compressed (IMA hashes the bytes
	// as stored, so the .ko.xz digest is of the compressed file).
	write(Layout.Modules[0], ls[:4096], 0o644)
	xzOut := runStdin(t, ls[:8192], "xz", "-c", "-6")
	write(Layout.Modules[1], xzOut, 0o644)
	fw := make([]byte, 4000)
	if _, err := rand.Read(fw); err != nil {
		t.Fatal(err)
	}
	write(Layout.Firmware[0], fw, 0o644)
	write(Layout.ExecScripts[0], []byte("#!/bin/sh\necho hello\n"), 0o755)
	write(Layout.PlainScripts[0], []byte("#!/bin/sh\necho not executable\n"), 0o644)
	write("/etc/motd", []byte("Welcome to release under test\n"), 0o644)
	write("/var/lib/rat/state", []byte("state\n"), 0o600)
	write("/usr/lib/os-release", []byte("NAME=\"Rat OS\"\nID=ratos\nVERSION_ID="+OSVersionID+"\nIMAGE_VERSION=\""+OSImageVersion+"\"\n"), 0o644)
	if err := os.Symlink("../usr/lib/os-release", filepath.Join(root, "etc/os-release")); err != nil {
		t.Fatal(err)
	}
	// The holed file: data at 1.5 MB and at the very end, holes elsewhere.
	full := filepath.Join(root, Layout.Holed)
	f, err := os.Create(full)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("middle"), 1_500_000); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("end"), HoledSize-3); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(root, Layout.HardLinkOf), filepath.Join(root, Layout.HardLink)); err != nil {
		t.Fatal(err)
	}
	for l, target := range Layout.FileLinks {
		if err := os.Symlink(target, filepath.Join(root, l)); err != nil {
			t.Fatal(err)
		}
	}
	for l, target := range Layout.DirLinks {
		if err := os.Symlink(target, filepath.Join(root, l)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

func runStdin(t testing.TB, in []byte, name string, args ...string) []byte {
	t.Helper()
	RequireTools(t, name)
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return out
}

// Sha256Sums runs sha256sum over every regular file of dir and returns
// image path ("/usr/bin/ls") → hex digest.
func Sha256Sums(t testing.TB, dir string) map[string]string {
	t.Helper()
	RequireTools(t, "sha256sum", "find")
	out := Run(t, dir, "sh", "-c", "find . -type f -print0 | xargs -0 sha256sum")
	sums := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		d, p, ok := strings.Cut(line, "  ")
		if !ok {
			t.Fatalf("sha256sum line %q", line)
		}
		sums[strings.TrimPrefix(p, ".")] = d
	}
	return sums
}

// Squashfs packs dir with mksquashfs (compression comp, e.g. "gzip",
// "xz", "zstd") and returns the image path.
func Squashfs(t testing.TB, dir, comp string) string {
	t.Helper()
	RequireTools(t, "mksquashfs")
	img := filepath.Join(t.TempDir(), "rootfs-"+comp+".squashfs")
	Run(t, "", "mksquashfs", dir, img, "-quiet", "-noappend", "-all-root", "-comp", comp, "-no-progress")
	return img
}

// Ext4 makes an ext4 image of dir with mke2fs -d at 1 KiB blocks (the
// block size that go-diskfs v1.9.4 mis-reads holes on).
func Ext4(t testing.TB, dir string) string {
	t.Helper()
	RequireTools(t, "mke2fs")
	img := filepath.Join(t.TempDir(), "rootfs.ext4")
	Run(t, "", "mke2fs", "-q", "-F", "-t", "ext4", "-b", "1024", "-d", dir, img, "12M")
	return img
}

// Tar packs dir with GNU tar; comp is "", "gzip", "xz" or "zstd".
func Tar(t testing.TB, dir, comp string) string {
	t.Helper()
	RequireTools(t, "tar")
	ext := map[string]string{"": ".tar", "gzip": ".tar.gz", "xz": ".tar.xz", "zstd": ".tar.zst"}[comp]
	img := filepath.Join(t.TempDir(), "rootfs"+ext)
	args := []string{"-C", dir, "--numeric-owner", "--owner=0", "--group=0", "-cf", img}
	if comp != "" {
		RequireTools(t, comp)
		args = append(args, "--"+comp)
	}
	Run(t, "", "tar", append(args, ".")...)
	return img
}
