package server

import (
	"math"
	"os"
	"runtime/debug"
	"testing"
)

// TestSetGCDefaults: the hub's GOGC and memory limit apply only where the
// environment sets none.
func TestSetGCDefaults(t *testing.T) {
	pct, lim := debug.SetGCPercent(100), debug.SetMemoryLimit(math.MaxInt64)
	defer func() { debug.SetGCPercent(pct); debug.SetMemoryLimit(lim) }()
	for _, tc := range []struct {
		name, gogc, gomemlimit string
		wantPct                int
		wantLimited            bool
	}{
		{"defaults", "", "", hubGCPercent, true},
		{"GOGC set", "150", "", 100, true},
		{"GOMEMLIMIT set", "", "1GiB", hubGCPercent, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			debug.SetMemoryLimit(math.MaxInt64)
			t.Setenv("GOGC", tc.gogc)
			t.Setenv("GOMEMLIMIT", tc.gomemlimit)
			t.Setenv("AUTOMEMLIMIT", "") // restored after the test, and
			os.Unsetenv("AUTOMEMLIMIT")  // unset for it (empty is refused)
			SetGCDefaults(nil)
			if got := debug.SetGCPercent(100); got != tc.wantPct {
				t.Errorf("GC percent %d, want %d", got, tc.wantPct)
			}
			got := debug.SetMemoryLimit(-1)
			if limited := got != math.MaxInt64; limited != tc.wantLimited {
				t.Errorf("memory limit %d: limited %v, want %v", got, limited, tc.wantLimited)
			}
		})
	}
}
