package runtimepolicy

import (
	"crypto"
	"path/filepath"
	"testing"

	"github.com/ratatouille/rat/evidence/ima"
)

// BenchmarkEvaluateReplay is the hub's per-entry IMA work on a real
// kernel's log (Ubuntu 24.04, kernel 6.8, ima-ng sha256): replay into the
// sha256 PCR 10 and evaluation against a policy generated from the log.
func BenchmarkEvaluateReplay(b *testing.B) {
	entries := mustLog(b, filepath.Join(td, "ima", "ubuntu2404-kernel68-ima-ng-sha256.ascii"))
	pol, err := FromEntries(entries)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("evaluate", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if evs := Evaluate(pol, entries); len(evs) != 0 {
				b.Fatal(evs[0])
			}
		}
		b.ReportMetric(float64(len(entries)*b.N)/b.Elapsed().Seconds(), "entries/s")
	})
	b.Run("evaluate+replay", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := ima.Replay(entries, crypto.SHA256, nil); err != nil {
				b.Fatal(err)
			}
			if evs := Evaluate(pol, entries); len(evs) != 0 {
				b.Fatal(evs[0])
			}
		}
		b.ReportMetric(float64(len(entries)*b.N)/b.Elapsed().Seconds(), "entries/s")
	})
}
