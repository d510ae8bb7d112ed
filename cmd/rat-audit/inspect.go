package main

import (
	"fmt"
	"io"
	"time"

	"github.com/ratatouille/rat/audit"
)

func ts(t int64) string {
	if t == 0 {
		return "?"
	}
	return time.Unix(t, 0).UTC().Format(time.RFC3339)
}

// inspect prints a readable summary. It runs the auditor without any
// trust anchor, so it shows what the bundle holds and what fails on its
// own; "rat-audit verify" with anchors gives the verdict.
func inspect(w io.Writer, r *audit.Report) {
	fmt.Fprintf(w, "device:   %s", r.Device.Subject)
	if r.Device.Issuer != "" {
		fmt.Fprintf(w, " (exported by %s)", r.Device.Issuer)
	}
	fmt.Fprintf(w, "\nueid:     %s\nak:       %s\n", r.Device.UEID, r.Device.AK)
	if r.SelfIssued {
		fmt.Fprintln(w, "nonces:   self-issued (air-gapped export: order, not freshness)")
	}
	fmt.Fprintf(w, "records:  %d (%d quotes, %d IMA entries)\n", r.Records, r.Quotes, r.IMAEntries)
	for _, s := range r.Segments {
		fmt.Fprintf(w, "span:     %s .. %s  records %d-%d, %d quotes", ts(s.FromTime), ts(s.ToTime), s.FromSeq, s.ToSeq, s.Quotes)
		if s.EndsBecause != "" {
			fmt.Fprintf(w, "  [then: %s]", s.EndsBecause)
		}
		fmt.Fprintln(w)
	}
	for _, b := range r.Reboots {
		fmt.Fprintf(w, "reboot:   before record %d at %s (resetCount %d, boot %s)\n", b.Seq, ts(b.Time), b.ResetCount, b.BootID)
	}
	for _, p := range r.Policies {
		signed := "unsigned"
		if p.Signed {
			signed = "signed"
			if p.Signer != "" {
				signed += " by " + p.Signer
			}
		}
		fmt.Fprintf(w, "policy:   %q %s since %s, %s, judged %d quotes\n", p.Name, p.Digest, ts(p.Since), signed, p.Records)
	}
	fmt.Fprintf(w, "failures: %d\n", len(r.Failures)+r.FailuresOmitted)
	for _, f := range r.Failures {
		fmt.Fprintf(w, "  - %s\n", f)
	}
	fmt.Fprintf(w, "without trust anchors the verdict is %s; run rat-audit verify with --ek-roots, --hub-key and policy signer options\n", r.Verdict)
}
