package ima

import (
	"crypto"
	"testing"
)

func BenchmarkReplaySHA256(b *testing.B) {
	es := readLog(b, "ubuntu2404-kernel68-ima-ng-sha256.ascii")
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	for i := 0; i < b.N; i++ {
		if _, err := Replay(es, crypto.SHA256, nil); err != nil {
			b.Fatal(err)
		}
	}
	reportRates(b, len(es), cpu0)
}

// reportRates reports entries per wall-clock second and, where the
// process's CPU time is known, entries per CPU-second (per core).
func reportRates(b *testing.B, entries int, cpu0 int64) {
	n := float64(entries * b.N)
	b.ReportMetric(n/b.Elapsed().Seconds(), "entries/s")
	if cpu := processCPU() - cpu0; cpu0 != 0 && cpu > 0 {
		b.ReportMetric(n/(float64(cpu)/1e9), "entries/cpu-s")
	}
}
