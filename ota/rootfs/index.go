package rootfs

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// maxLinks is Linux's limit on symlinks followed in one lookup (ELOOP).
const maxLinks = 40

// ErrLoop is returned when resolving a path follows more than 40 symlinks.
var ErrLoop = errors.New("rootfs: too many levels of symbolic links")

// Index is the metadata of every entry of an image (no content), for
// resolving paths inside the image as the kernel would after the image is
// booted as "/".
type Index struct {
	entries map[string]Entry
}

// NewIndex returns an empty index; Add entries while walking.
func NewIndex() *Index { return &Index{entries: map[string]Entry{"/": {Path: "/", Mode: fs.ModeDir}}} }

// Add records e (its content opener is dropped).
func (x *Index) Add(e Entry) {
	e.open = nil
	x.entries[e.Path] = e
}

// Lookup returns the entry stored at exactly p (no resolution).
func (x *Index) Lookup(p string) (Entry, bool) {
	e, ok := x.entries[p]
	return e, ok
}

// Resolve follows symlinks in every component of p, chroot-style (".."
// stops at "/", absolute targets start at the image root), and returns
// the canonical path: the one IMA prints, because the kernel logs the
// path of the dentry it opened, not the name the caller used. A dangling
// component is an error.
func (x *Index) Resolve(p string) (string, error) {
	links := 0
	var resolve func(dir, rest string) (string, error)
	resolve = func(cur, rest string) (string, error) {
		for rest != "" {
			var name string
			name, rest, _ = strings.Cut(rest, "/")
			switch name {
			case "", ".":
				continue
			case "..":
				cur = path.Dir(cur)
				continue
			}
			next := path.Join(cur, name)
			e, ok := x.entries[next]
			if !ok {
				return "", fmt.Errorf("rootfs: resolve %s: %s does not exist", p, next)
			}
			if e.IsSymlink() {
				links++
				if links > maxLinks {
					return "", fmt.Errorf("%w: %s", ErrLoop, p)
				}
				base := cur
				if strings.HasPrefix(e.Target, "/") {
					base = "/"
				}
				r, err := resolve(base, e.Target)
				if err != nil {
					return "", err
				}
				cur = r
				continue
			}
			if rest != "" && !e.Mode.IsDir() {
				return "", fmt.Errorf("rootfs: resolve %s: %s is not a directory", p, next)
			}
			cur = next
		}
		return cur, nil
	}
	return resolve("/", p)
}

// Aliases maps other names by which a regular file can be opened to its
// canonical path: file symlinks, and the files under a directory symlink
// such as a usr-merged /bin -> usr/bin, and file links below those
// (top-level directory links only, which is how usr-merge and /lib64
// links look). A policy keyed only by canonical
// paths is what IMA needs; the aliases let a policy also accept a log
// written on a system whose kernel printed the name used (for example
// files opened before a merge-converting update).
func (x *Index) Aliases() map[string]string {
	out := map[string]string{}
	names := make([]string, 0, len(x.entries))
	for p := range x.entries {
		names = append(names, p)
	}
	sort.Strings(names)
	for _, p := range names {
		e := x.entries[p]
		if !e.IsSymlink() {
			continue
		}
		r, err := x.Resolve(p)
		if err != nil {
			continue
		}
		t, ok := x.entries[r]
		switch {
		case ok && t.IsRegular():
			out[p] = r
		case ok && t.Mode.IsDir():
			// Only top-level directory links (/bin, /sbin, /lib, /lib64:
			// usr-merge) alias their contents; links such as Debian's
			// /usr/bin/X11 -> . would only duplicate entries.
			prefix := r + "/"
			if r == "/" || path.Dir(p) != "/" {
				continue
			}
			for _, q := range names {
				if !strings.HasPrefix(q, prefix) {
					continue
				}
				alias := p + "/" + strings.TrimPrefix(q, prefix)
				switch qe := x.entries[q]; {
				case qe.IsRegular():
					out[alias] = q
				case qe.IsSymlink():
					// /lib/x86_64-linux-gnu/libz.so.1: a file link
					// under a directory link.
					if rq, err := x.Resolve(q); err == nil && x.entries[rq].IsRegular() {
						out[alias] = rq
					}
				}
			}
		}
	}
	return out
}

// Regular returns the canonical paths of all regular files, sorted.
func (x *Index) Regular() []string {
	var out []string
	for p, e := range x.entries {
		if e.IsRegular() {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}
