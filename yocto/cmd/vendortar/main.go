// Command vendortar writes a reproducible source tarball of the repository
// at a commit with device/vendor/ filled by go mod vendor (package
// yocto/vendortar), for Yocto releases without the gomod:// fetcher.
//
//	go run ./yocto/cmd/vendortar [-commit HEAD] [-o bin/]
//
// It prints the file name and its sha256 (what a recipe's SRC_URI pins).
package main

import (
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ratatouille/rat/yocto/vendortar"
)

func main() {
	commit := flag.String("commit", "HEAD", "commit to archive")
	outDir := flag.String("o", "bin", "output directory")
	flag.Parse()
	if err := run(*commit, *outDir); err != nil {
		fmt.Fprintln(os.Stderr, "vendortar:", err)
		os.Exit(1)
	}
}

func run(commit, outDir string) error {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(outDir, ".vendortar-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	rev, err := vendortar.Write(context.Background(), io.MultiWriter(tmp, h), vendortar.Options{Repo: ".", Commit: commit, Module: "device"})
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	name := filepath.Join(outDir, "rat-"+rev[:12]+"-vendor.tar.gz")
	if err := os.Rename(tmp.Name(), name); err != nil {
		return err
	}
	fmt.Printf("%s sha256=%x\n", name, h.Sum(nil))
	return nil
}
