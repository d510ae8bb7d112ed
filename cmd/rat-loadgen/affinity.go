package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// parseCPUs reads a CPU list such as "1", "0,1" or "2-3" of this
// machine's CPUs.
func parseCPUs(s string) ([]int, error) {
	cpus, err := parseCPUList(s)
	if err != nil {
		return nil, err
	}
	for _, c := range cpus {
		if c >= runtime.NumCPU() {
			return nil, fmt.Errorf("cpu list %q: CPUs are 0..%d", s, runtime.NumCPU()-1)
		}
	}
	return cpus, nil
}

// maxCPUs is what a unix.CPUSet holds (CPU_SETSIZE).
const maxCPUs = int(unsafe.Sizeof(unix.CPUSet{})) * 8

// parseCPUList reads a CPU list without bounding it by runtime.NumCPU,
// which counts only the CPUs a process may run on when it starts: a child
// started by a pinned generator sees one CPU, and the kernel refuses a CPU
// that does not exist anyway.
func parseCPUList(s string) ([]int, error) {
	var cpus []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("cpu list %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				return nil, fmt.Errorf("cpu list %q: %w", s, err)
			}
		}
		if a < 0 || b < a || b >= maxCPUs {
			return nil, fmt.Errorf("cpu list %q: not a list of CPUs", s)
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

// pinned undoes pinSelf: it returns a function that puts every thread of
// this process back on the CPUs it had, and GOMAXPROCS back.
func pinned() (restore func(), err error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("read cpu affinity: %w", err)
	}
	procs := runtime.GOMAXPROCS(0)
	return func() {
		_ = setAll(&set)
		runtime.GOMAXPROCS(procs)
	}, nil
}

func setAll(set *unix.CPUSet) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		// A thread may have exited since the directory was read.
		if err := unix.SchedSetaffinity(tid, set); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("thread %d: %w", tid, err)
		}
	}
	return nil
}

// pinSelf binds every thread of this process to cpus and sets GOMAXPROCS
// to their number, so the hub and the generator do not share cores and the
// hub's rate is that of the cores it was given. Threads the runtime starts
// later inherit the binding from the thread that starts them.
func pinSelf(cpus []int) error {
	set := cpuSet(cpus)
	if err := setAll(&set); err != nil {
		return fmt.Errorf("pin to cpus %v: %w", cpus, err)
	}
	runtime.GOMAXPROCS(len(cpus))
	return nil
}

func cpuSet(cpus []int) unix.CPUSet {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	return set
}

// otherCPUs is every CPU not in cpus.
func otherCPUs(cpus []int) []int {
	in := map[int]bool{}
	for _, c := range cpus {
		in[c] = true
	}
	var rest []int
	for c := 0; c < runtime.NumCPU(); c++ {
		if !in[c] {
			rest = append(rest, c)
		}
	}
	return rest
}
