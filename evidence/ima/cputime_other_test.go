//go:build !unix

package ima

// processCPU is not measured here; the CPU-time metrics are then left out.
func processCPU() int64 { return 0 }
