package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// calibrateVerifies is how many bare verifications one calibration times
// (≈ 0.2–0.4 s of one core).
const calibrateVerifies = 4000

// calibrateMain is the child "rat-loadgen calibrate": it pins itself to
// -cpus (the hub's), times bare ECDSA P-256 verifications of a SHA-256
// digest by its own CPU time (getrusage), and prints the CPU per verify in
// nanoseconds. The hub's quote check is this verification plus the parsing
// around it, so "hub CPU per record ÷ this" counts a record's cost in
// signature verifications on the same core at the same time: target 2's
// 40 % of the bare rate per core is a ratio of at most 2.5. A profile's
// sample counts give the same ratio with ±12 % sampling noise on a short
// run (≈ 70 ECDSA samples); this one is exact up to the host's drift
// between the calibrations before and after the run.
func calibrateMain(args []string) error {
	fs := flag.NewFlagSet("calibrate", flag.ContinueOnError)
	cpuList := fs.String("cpus", "", "pin to these CPUs")
	n := fs.Int("n", calibrateVerifies, "verifications")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuList != "" {
		cpus, err := parseCPUList(*cpuList)
		if err != nil {
			return err
		}
		if err := pinSelf(cpus); err != nil {
			return err
		}
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	digest := sha256.Sum256([]byte("rat-loadgen calibration"))
	r, s, err := ecdsa.Sign(rand.Reader, k, digest[:])
	if err != nil {
		return err
	}
	for i := 0; i < 200; i++ { // warm up
		ecdsa.Verify(&k.PublicKey, digest[:], r, s)
	}
	c0 := selfCPU()
	for i := 0; i < *n; i++ {
		if !ecdsa.Verify(&k.PublicKey, digest[:], r, s) {
			return fmt.Errorf("calibration signature did not verify")
		}
	}
	fmt.Println((selfCPU() - c0).Nanoseconds() / int64(*n))
	return nil
}

// calibrate runs the calibration child on cpus ("" unpinned) and returns
// the CPU per bare verification.
func calibrate(cpus string) (time.Duration, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	args := []string{"calibrate"}
	if cpus != "" {
		args = append(args, "-cpus", cpus)
	}
	out, err := exec.Command(self, args...).Output()
	if err != nil {
		return 0, fmt.Errorf("calibrate: %w", err)
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("calibrate: %q: %w", out, err)
	}
	return time.Duration(ns), nil
}
