package gomods

import (
	"archive/zip"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"sort"
	"strings"
)

// h1 is the go command's "h1:" tree hash (dirhash.Hash1): sha256 over the
// lines "<hex sha256 of file>  <name>\n" of the sorted file names.
func h1(names []string, open func(string) (io.ReadCloser, error)) (string, error) {
	names = append([]string(nil), names...)
	sort.Strings(names)
	sum := sha256.New()
	for _, name := range names {
		if strings.Contains(name, "\n") {
			return "", fmt.Errorf("file name %q has a newline", name)
		}
		r, err := open(name)
		if err != nil {
			return "", fmt.Errorf("open %s: %w", name, err)
		}
		fh := sha256.New()
		_, err = io.Copy(fh, r)
		r.Close()
		if err != nil {
			return "", fmt.Errorf("read %s: %w", name, err)
		}
		fmt.Fprintf(sum, "%x  %s\n", fh.Sum(nil), name)
	}
	return "h1:" + base64.StdEncoding.EncodeToString(sum.Sum(nil)), nil
}

// goModH1 is the h1 hash go.sum records for a go.mod file.
func goModH1(data []byte) string {
	h, _ := h1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(string(data))), nil
	})
	return h
}

// zipH1 is the h1 hash go.sum records for a module zip.
func zipH1(path string) (string, error) {
	z, err := zip.OpenReader(path)
	if err != nil {
		return "", fmt.Errorf("module zip %s: %w", path, err)
	}
	defer z.Close()
	files := map[string]*zip.File{}
	var names []string
	for _, f := range z.File {
		if _, dup := files[f.Name]; dup {
			return "", fmt.Errorf("module zip %s: %s twice", path, f.Name)
		}
		files[f.Name] = f
		names = append(names, f.Name)
	}
	return h1(names, func(name string) (io.ReadCloser, error) { return files[name].Open() })
}
