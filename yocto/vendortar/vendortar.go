package vendortar

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Options says what to archive.
type Options struct {
	Repo   string // git work tree or repository (the repository root)
	Commit string // commit to archive, e.g. HEAD or the recipe's SRCREV
	Module string // module directory to vendor, relative to the root ("device")
	Prefix string // directory name inside the archive; default rat-<12 hex of the commit>
	Go     string // go command; "go" when empty
}

// Write archives opt.Commit with opt.Module's dependencies vendored and
// writes the .tar.gz to w. It returns the full commit id.
func Write(ctx context.Context, w io.Writer, opt Options) (string, error) {
	if opt.Go == "" {
		opt.Go = "go"
	}
	rev, err := run(ctx, opt.Repo, nil, "git", "rev-parse", "--verify", opt.Commit+"^{commit}")
	if err != nil {
		return "", err
	}
	rev = strings.TrimSpace(rev)
	ts, err := run(ctx, opt.Repo, nil, "git", "show", "-s", "--format=%ct", rev)
	if err != nil {
		return "", err
	}
	secs, err := strconv.ParseInt(strings.TrimSpace(ts), 10, 64)
	if err != nil {
		return "", fmt.Errorf("vendortar: commit time %q: %w", ts, err)
	}
	mtime := time.Unix(secs, 0).UTC()
	if opt.Prefix == "" {
		opt.Prefix = "rat-" + rev[:12]
	}

	tmp, err := os.MkdirTemp("", "vendortar-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	tree := filepath.Join(tmp, "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		return "", err
	}
	archive, err := run(ctx, opt.Repo, nil, "git", "archive", "--format=tar", rev)
	if err != nil {
		return "", err
	}
	if err := extract(strings.NewReader(archive), tree); err != nil {
		return "", err
	}
	// go mod vendor with the read-only graph of go.mod/go.sum at the commit.
	if _, err := run(ctx, filepath.Join(tree, opt.Module), []string{"GOWORK=off", "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local"}, opt.Go, "mod", "vendor"); err != nil {
		return "", err
	}
	if err := writeTarGz(w, tree, opt.Prefix, mtime); err != nil {
		return "", err
	}
	return rev, nil
}

func run(ctx context.Context, dir string, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("vendortar: %s %s in %s: %w: %s", name, strings.Join(args, " "), dir, err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// extract unpacks git archive's tar (regular files, directories and
// symlinks only; names stay inside dir).
func extract(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("vendortar: git archive: %w", err)
		}
		name := filepath.Clean(h.Name)
		if !filepath.IsLocal(name) {
			if h.Typeflag == tar.TypeXGlobalHeader {
				continue
			}
			return fmt.Errorf("vendortar: git archive entry %q leaves the tree", h.Name)
		}
		p := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, fs.FileMode(h.Mode)&0o755|0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
		case tar.TypeXGlobalHeader:
		default:
			return fmt.Errorf("vendortar: git archive entry %q of type %c", h.Name, h.Typeflag)
		}
	}
}

// writeTarGz writes dir as prefix/... with fixed metadata, sorted.
func writeTarGz(w io.Writer, dir, prefix string, mtime time.Time) error {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel != "." {
			paths = append(paths, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(paths)
	zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	hdr := func(name string, typ byte, mode int64, size int64, link string) *tar.Header {
		return &tar.Header{Name: name, Typeflag: typ, Mode: mode, Size: size, Linkname: link,
			ModTime: mtime, Uname: "", Gname: "", Uid: 0, Gid: 0, Format: tar.FormatPAX}
	}
	if err := tw.WriteHeader(hdr(prefix+"/", tar.TypeDir, 0o755, 0, "")); err != nil {
		return err
	}
	for _, rel := range paths {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		st, err := os.Lstat(p)
		if err != nil {
			return err
		}
		name := prefix + "/" + rel
		switch {
		case st.IsDir():
			err = tw.WriteHeader(hdr(name+"/", tar.TypeDir, 0o755, 0, ""))
		case st.Mode()&fs.ModeSymlink != 0:
			link, lerr := os.Readlink(p)
			if lerr != nil {
				return lerr
			}
			err = tw.WriteHeader(hdr(name, tar.TypeSymlink, 0o777, 0, link))
		case st.Mode().IsRegular():
			mode := int64(0o644)
			if st.Mode()&0o111 != 0 {
				mode = 0o755
			}
			if err = tw.WriteHeader(hdr(name, tar.TypeReg, mode, st.Size(), "")); err == nil {
				var data []byte
				if data, err = os.ReadFile(p); err == nil {
					_, err = tw.Write(data)
				}
			}
		default:
			return fmt.Errorf("vendortar: %s is not a file, directory or symlink", rel)
		}
		if err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}
