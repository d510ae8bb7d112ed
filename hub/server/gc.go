package server

import (
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// hubGCPercent is the GOGC of a hub process unless GOGC is set.
const hubGCPercent = 400

// SetGCDefaults tunes the Go garbage collector for a process that runs a
// hub; rat-hub serve (and the load generator's hub) call it first.
//
// Why: a hub's heap is mostly the device cache, long-lived, while each
// record allocates ≈ 40 KB that dies at once. The collector's work per
// record is proportional to the allocation per record divided by GOGC (a
// larger live heap makes cycles longer but rarer by the same factor), so
// GOGC=400 does a quarter of the default's marking (GC was ≈ 8-12 % of the
// hub's CPU at GOGC=100). The price is a heap up to 5× the live one, so the
// memory limit (GOMEMLIMIT) is set too, to 90 % of the cgroup's limit or,
// without one, half the machine's memory: near it the collector runs more
// often instead of growing the heap. GOGC and GOMEMLIMIT in the environment
// win over both; so does AUTOMEMLIMIT=off for the limit.
func SetGCDefaults(log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	gogc := os.Getenv("GOGC")
	if gogc == "" {
		debug.SetGCPercent(hubGCPercent)
		gogc = strconv.Itoa(hubGCPercent) + " (hub default)"
	}
	limit, err := memlimit.Set(
		memlimit.WithLogger(log),
		memlimit.WithProvider(memlimit.ApplyFallback(
			memlimit.ApplyRatio(memlimit.FromCgroup, 0.9),
			memlimit.ApplyRatio(memlimit.FromSystem, 0.5))),
		memlimit.WithRatio(1))
	if err != nil {
		log.Warn("no memory limit for the garbage collector", "err", err)
	}
	log.Debug("garbage collector", "GOGC", gogc, "GOMEMLIMIT", limit)
}
