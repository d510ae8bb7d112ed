package runtimepolicy

import (
	"bytes"
	"crypto"
	"path/filepath"
	"testing"

	"github.com/ratatouille/rat/evidence/ima"
)

// BenchmarkEvaluateReplay is the hub's per-entry IMA work on a real
// kernel's log (Ubuntu 24.04, kernel 6.8, ima-ng sha256): replay into the
// sha256 PCR 10 and evaluation against a policy generated from the log.
// "evaluate+replay" is the target's measure (entries already parsed);
// "hub" is the whole sequence hub/verifier runs on a record's delta: parse
// the binary log, verify the template hashes, AdvanceTo the quoted PCR 10
// (which verifies them again) and evaluate.
func BenchmarkEvaluateReplay(b *testing.B) {
	entries := mustLog(b, filepath.Join(td, "ima", "ubuntu2404-kernel68-ima-ng-sha256.ascii"))
	pol, err := FromEntries(entries)
	if err != nil {
		b.Fatal(err)
	}
	quoted, err := ima.Replay(entries, crypto.SHA256, nil)
	if err != nil {
		b.Fatal(err)
	}
	bin := ima.MarshalBinary(entries)
	run := func(name string, f func(b *testing.B)) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			cpu0 := processCPU()
			for i := 0; i < b.N; i++ {
				f(b)
			}
			n := float64(len(entries) * b.N)
			b.ReportMetric(n/b.Elapsed().Seconds(), "entries/s")
			if cpu := processCPU() - cpu0; cpu0 != 0 && cpu > 0 {
				b.ReportMetric(n/(float64(cpu)/1e9), "entries/cpu-s")
			}
		})
	}
	run("evaluate", func(b *testing.B) {
		if evs := Evaluate(pol, entries); len(evs) != 0 {
			b.Fatal(evs[0])
		}
	})
	run("replay", func(b *testing.B) {
		if _, err := ima.Replay(entries, crypto.SHA256, nil); err != nil {
			b.Fatal(err)
		}
	})
	// Excludes as deployments write them (none matches most of this log).
	polEx, err := FromEntries(entries, WithExcludes(`/tmp/.*`, `/var/log/.*`, `/home/[^/]+/\.cache/.*`, `/root/.*`, `/run/user/.*`, `/usr/lib/modules/.*\.ko$`))
	if err != nil {
		b.Fatal(err)
	}
	run("evaluate/6-excludes", func(b *testing.B) {
		if evs := Evaluate(polEx, entries); len(evs) != 0 {
			b.Fatal(evs[0])
		}
	})
	run("evaluate+replay", func(b *testing.B) {
		if _, err := ima.Replay(entries, crypto.SHA256, nil); err != nil {
			b.Fatal(err)
		}
		if evs := Evaluate(pol, entries); len(evs) != 0 {
			b.Fatal(evs[0])
		}
	})
	run("hub", func(b *testing.B) {
		es, err := ima.ParseBinary(bytes.NewReader(bin))
		if err != nil {
			b.Fatal(err)
		}
		if err := ima.VerifyTemplateHashes(es, 0); err != nil {
			b.Fatal(err)
		}
		r, err := ima.Resume(crypto.SHA256, nil, 0)
		if err != nil {
			b.Fatal(err)
		}
		if n, err := r.AdvanceTo(es, quoted); err != nil || n != len(es) {
			b.Fatal(n, err)
		}
		if evs := Evaluate(pol, es, WithBootAggregates()); len(evs) != 0 {
			b.Fatal(evs[0])
		}
	})
}
