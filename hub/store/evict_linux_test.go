//go:build linux && (amd64 || arm64)

package store

import (
	"os"
	"syscall"
	"testing"
)

// evict drops path's pages from the page cache (posix_fadvise
// POSIX_FADV_DONTNEED on this file only), so the next open reads from the
// disk as after a reboot.
func evict(tb testing.TB, path string) {
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	const dontNeed = 4 // POSIX_FADV_DONTNEED
	if _, _, e := syscall.Syscall6(syscall.SYS_FADVISE64, f.Fd(), 0, 0, dontNeed, 0, 0); e != 0 {
		tb.Fatal(e)
	}
}
