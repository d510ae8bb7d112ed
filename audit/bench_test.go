package audit_test

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ratatouille/rat/audit"
	"github.com/ratatouille/rat/audit/simbundle"
)

// benchDays is the list of bundle sizes (device-days) BenchmarkVerifyDays
// audits: RAT_AUDIT_DAYS="1,10" (default 1).
func benchDays(b *testing.B) []int {
	s := os.Getenv("RAT_AUDIT_DAYS")
	if s == "" {
		s = "1"
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			b.Fatalf("RAT_AUDIT_DAYS=%q: %q is not a number of days", s, f)
		}
		out = append(out, n)
	}
	return out
}

// benchCache is where generated bundles are kept between runs
// (RAT_AUDIT_CACHE, default $TMPDIR/rat-auditbench).
func benchCache() string {
	if d := os.Getenv("RAT_AUDIT_CACHE"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "rat-auditbench")
}

// BenchmarkVerifyDays audits real simulator bundles of whole device-days
// (8,640 quotes, 100,000 IMA entries and two signed policies per day; issue
// 10 target 6), streamed from the cached file as rat-audit reads it. Run
// with -cpu 1 for the one-core figure. Every run must be TRUSTED.
func BenchmarkVerifyDays(b *testing.B) {
	for _, days := range benchDays(b) {
		o := simbundle.DaysOptions{Days: days, EventLog: realEventLog}
		dir, fx, err := simbundle.CachedDays(benchCache(), o)
		if err != nil {
			b.Fatal(err)
		}
		path := filepath.Join(dir, "bundle.cbor")
		opts := []audit.Option{
			audit.WithEKRootsDir(fx.EKRootsDir),
			audit.WithPolicyKey(fx.PolicyKeyPEM),
			audit.WithoutTlogUnsafe(),
			audit.WithHubKeyPEM(fx.HubKeyPEM),
		}
		b.Run("days="+strconv.Itoa(days), func(b *testing.B) {
			b.SetBytes(fx.Bytes)
			b.ReportAllocs()
			cpu0 := cpuTime()
			for i := 0; i < b.N; i++ {
				f, err := os.Open(path)
				if err != nil {
					b.Fatal(err)
				}
				rep, err := audit.Verify(bufio.NewReaderSize(f, 1<<16), opts...)
				f.Close()
				if err != nil {
					b.Fatal(err)
				}
				if rep.Verdict != audit.Trusted || rep.Quotes != fx.Quotes || rep.IMAEntries != fx.Entries {
					var s strings.Builder
					rep.WriteText(&s)
					b.Fatalf("verdict %s, %d quotes (want %d), %d IMA entries (want %d)\n%s", rep.Verdict, rep.Quotes, fx.Quotes, rep.IMAEntries, fx.Entries, s.String())
				}
			}
			// CPU time of the process (user + system) per audit: on a shared
			// machine wall time also counts waiting for a core.
			b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
			b.ReportMetric(float64(fx.Bytes)/float64(fx.Quotes), "bundle-B/quote")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(fx.Quotes), "ns/quote")
		})
	}
}

// cpuTime is the process's user + system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
