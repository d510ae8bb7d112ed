package ima

import (
	"crypto"
	"testing"
)

func BenchmarkReplaySHA256(b *testing.B) {
	es := readLog(b, "ubuntu2404-kernel68-ima-ng-sha256.ascii")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Replay(es, crypto.SHA256, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(es)*b.N)/b.Elapsed().Seconds(), "entries/s")
}
