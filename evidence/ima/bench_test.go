package ima

import (
	"bytes"
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

// BenchmarkHubSteps measures, on the same log, each step hub/verifier runs
// on a record's IMA delta: decode the binary form, verify every template
// hash, and AdvanceTo the quoted PCR 10 (which verifies them again).
func BenchmarkHubSteps(b *testing.B) {
	es := readLog(b, "ubuntu2404-kernel68-ima-ng-sha256.ascii")
	bin := MarshalBinary(es)
	quoted, err := Replay(es, crypto.SHA256, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, s := range []struct {
		name string
		f    func() error
	}{
		{"ParseBinary", func() error { _, err := ParseBinary(bytes.NewReader(bin)); return err }},
		{"VerifyTemplateHashes", func() error { return VerifyTemplateHashes(es, 0) }},
		{"AdvanceTo", func() error {
			r, err := NewReplayer(crypto.SHA256, nil)
			if err == nil {
				_, err = r.AdvanceTo(es, quoted)
			}
			return err
		}},
	} {
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu0 := processCPU()
			for i := 0; i < b.N; i++ {
				if err := s.f(); err != nil {
					b.Fatal(err)
				}
			}
			reportRates(b, len(es), cpu0)
		})
	}
}
