//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
)

// initramfs is an initramfs in the kernel's "newc" cpio format, built in
// memory so that it needs neither root (for /dev/console) nor a cpio tool,
// and is byte-identical for identical inputs: the guest's IMA log then
// measures the same files on every boot.
type initramfs struct {
	entries map[string]cpioEntry
}

type cpioEntry struct {
	mode         uint32 // type and permission bits
	data         []byte // file content or symlink target
	major, minor uint32 // device nodes
}

const (
	cpioDir  = 0o040000
	cpioReg  = 0o100000
	cpioLink = 0o120000
	cpioChr  = 0o020000
)

func newInitramfs() *initramfs { return &initramfs{entries: map[string]cpioEntry{}} }

// add records name and creates its parent directories.
func (r *initramfs) add(name string, e cpioEntry) {
	name = strings.TrimPrefix(path.Clean("/"+name), "/")
	for d := path.Dir(name); d != "." && d != "/"; d = path.Dir(d) {
		if _, ok := r.entries[d]; !ok {
			r.entries[d] = cpioEntry{mode: cpioDir | 0o755}
		}
	}
	r.entries[name] = e
}

func (r *initramfs) dir(name string) { r.add(name, cpioEntry{mode: cpioDir | 0o755}) }

func (r *initramfs) file(name string, perm uint32, data []byte) {
	r.add(name, cpioEntry{mode: cpioReg | perm, data: data})
}

func (r *initramfs) copyFile(name string, perm uint32, src string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("initramfs %s: %w", name, err)
	}
	r.file(name, perm, b)
	return nil
}

func (r *initramfs) symlink(name, target string) {
	r.add(name, cpioEntry{mode: cpioLink | 0o777, data: []byte(target)})
}

func (r *initramfs) chardev(name string, major, minor uint32) {
	r.add(name, cpioEntry{mode: cpioChr | 0o600, major: major, minor: minor})
}

// write emits the archive, parents before children, then the trailer.
func (r *initramfs) write(w io.Writer) error {
	names := make([]string, 0, len(r.entries))
	for n := range r.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	ino := uint32(1)
	put := func(name string, e cpioEntry) {
		nlink := uint32(1)
		if e.mode&0o170000 == cpioDir {
			nlink = 2
		}
		fmt.Fprintf(&buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, e.mode, 0, 0, nlink, 0, len(e.data), 0, 0, e.major, e.minor, len(name)+1, 0)
		buf.WriteString(name)
		buf.WriteByte(0)
		pad4(&buf)
		buf.Write(e.data)
		pad4(&buf)
		ino++
	}
	for _, n := range names {
		put(n, r.entries[n])
	}
	put("TRAILER!!!", cpioEntry{})
	_, err := w.Write(buf.Bytes())
	return err
}

func pad4(b *bytes.Buffer) {
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
}
