//go:build unix

package runtimepolicy

import "syscall"

// processCPU is the CPU time (user + system, all threads, GC included)
// this process has used, in nanoseconds. Benchmarks report entries per
// CPU-second from it, which a loaded shared machine distorts far less
// than wall-clock time.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
