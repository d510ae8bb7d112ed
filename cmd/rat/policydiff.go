package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/ratatouille/rat/evidence/runtimepolicy"
)

const policyDiffUsage = `usage: rat policy diff [--json] A B
  Compares two runtime policies, typically A = a prediction (rat ota policy)
  and B = a baseline from a real device's IMA log (rat policy create).
  What B has and A lacks is what a device behaving like B raises false
  alarms for when judged by A. exit: 0 same, 1 different, 2 usage or error`

// digestDiff is one path whose allowed digests differ.
type digestDiff struct {
	Path string `json:"path"`
	// Digests are those of the side that has them and the other lacks.
	Digests []string `json:"digests"`
	// Other are the digests the other side allows for the path (empty if
	// the path is missing there altogether).
	Other []string `json:"other,omitempty"`
}

type policyDiffReport struct {
	// OnlyB: allowed by B, not by A (false alarms if A judges).
	OnlyB []digestDiff `json:"b_not_a"`
	// OnlyA: allowed by A, not by B.
	OnlyA []digestDiff `json:"a_not_b"`
	// ExcludedByA: paths B lists that A does not judge (A excludes them).
	ExcludedByA []string `json:"b_excluded_by_a,omitempty"`
	ExcludedByB []string `json:"a_excluded_by_b,omitempty"`
	ExcludesA   []string `json:"excludes_only_a,omitempty"`
	ExcludesB   []string `json:"excludes_only_b,omitempty"`
	// BootAggregate notes: it depends on the boot (PCRs 0-9), so a
	// prediction never has it; the verifier supplies it from the quote.
	BootAggregateOnly string   `json:"boot_aggregate_only,omitempty"`
	AlgorithmsA       []string `json:"algorithms_a"`
	AlgorithmsB       []string `json:"algorithms_b"`
}

func (r *policyDiffReport) same() bool {
	return len(r.OnlyA) == 0 && len(r.OnlyB) == 0 && len(r.ExcludesA) == 0 && len(r.ExcludesB) == 0 &&
		len(r.ExcludedByA) == 0 && len(r.ExcludedByB) == 0
}

var hexDigestAlg = map[int]string{40: "sha1", 64: "sha256/sm3_256", 96: "sha384", 128: "sha512"}

func digestAlgorithms(p *runtimepolicy.Policy) []string {
	seen := map[string]bool{}
	for path, ds := range p.Digests {
		if path == "boot_aggregate" {
			continue
		}
		for _, d := range ds {
			a, ok := hexDigestAlg[len(d)]
			if !ok {
				a = fmt.Sprintf("%d-hex-digit", len(d))
			}
			seen[a] = true
		}
	}
	out := make([]string, 0, len(seen))
	for a := range seen {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// diffPolicies compares the digests and excludes of a and b.
func diffPolicies(a, b *runtimepolicy.Policy) *policyDiffReport {
	r := &policyDiffReport{AlgorithmsA: digestAlgorithms(a), AlgorithmsB: digestAlgorithms(b)}
	one := func(from, to *runtimepolicy.Policy, excluded *[]string) []digestDiff {
		var out []digestDiff
		paths := make([]string, 0, len(from.Digests))
		for p := range from.Digests {
			paths = append(paths, p)
		}
		sort.Strings(paths)
		for _, p := range paths {
			if p == "boot_aggregate" {
				continue
			}
			if to.Excluded(p) {
				*excluded = append(*excluded, p)
				continue
			}
			var missing []string
			for _, d := range from.Digests[p] {
				if !slices.Contains(to.Digests[p], strings.ToLower(d)) && !slices.Contains(to.Digests[p], d) {
					missing = append(missing, d)
				}
			}
			if len(missing) > 0 {
				out = append(out, digestDiff{Path: p, Digests: missing, Other: to.Digests[p]})
			}
		}
		return out
	}
	r.OnlyB = one(b, a, &r.ExcludedByA)
	r.OnlyA = one(a, b, &r.ExcludedByB)
	for _, e := range a.Excludes {
		if !slices.Contains(b.Excludes, e) {
			r.ExcludesA = append(r.ExcludesA, e)
		}
	}
	for _, e := range b.Excludes {
		if !slices.Contains(a.Excludes, e) {
			r.ExcludesB = append(r.ExcludesB, e)
		}
	}
	_, ina := a.Digests["boot_aggregate"]
	_, inb := b.Digests["boot_aggregate"]
	switch {
	case ina && !inb:
		r.BootAggregateOnly = "A"
	case inb && !ina:
		r.BootAggregateOnly = "B"
	}
	return r
}

func (r *policyDiffReport) write(w io.Writer, nameA, nameB string) {
	list := func(ds []digestDiff, have, lack string) {
		for _, d := range ds {
			if len(d.Other) == 0 {
				fmt.Fprintf(w, "  %s  (path not in %s at all)\n", d.Path, lack)
			} else {
				fmt.Fprintf(w, "  %s  (%s allows other content: %s)\n", d.Path, lack, strings.Join(shortDigests(d.Other), ", "))
			}
			fmt.Fprintf(w, "      %s allows %s\n", have, strings.Join(shortDigests(d.Digests), ", "))
		}
	}
	fmt.Fprintf(w, "A = %s\nB = %s\n\n", nameA, nameB)
	if !slices.Equal(r.AlgorithmsA, r.AlgorithmsB) {
		fmt.Fprintf(w, "WARNING: A's digests are %s, B's are %s: digests of different hash algorithms never match; compare policies made with the kernel's one algorithm.\n\n",
			strings.Join(r.AlgorithmsA, "+"), strings.Join(r.AlgorithmsB, "+"))
	}
	fmt.Fprintf(w, "B has, A lacks: %d path(s). Judged by A, a device doing what B recorded raises a false alarm for each:\n", len(r.OnlyB))
	list(r.OnlyB, "B", "A")
	fmt.Fprintf(w, "\nA has, B lacks: %d path(s). A allows content B never saw (expected for files the device did not run, or a wider IMA policy):\n", len(r.OnlyA))
	list(r.OnlyA, "A", "B")
	if len(r.ExcludedByA) > 0 {
		fmt.Fprintf(w, "\nB lists %d path(s) that A's excludes leave unjudged: %s\n", len(r.ExcludedByA), strings.Join(r.ExcludedByA, " "))
	}
	if len(r.ExcludedByB) > 0 {
		fmt.Fprintf(w, "\nA lists %d path(s) that B's excludes leave unjudged: %s\n", len(r.ExcludedByB), strings.Join(r.ExcludedByB, " "))
	}
	if len(r.ExcludesA) > 0 {
		fmt.Fprintf(w, "\nexcludes only in A: %s\n", strings.Join(r.ExcludesA, " "))
	}
	if len(r.ExcludesB) > 0 {
		fmt.Fprintf(w, "\nexcludes only in B: %s\n", strings.Join(r.ExcludesB, " "))
	}
	if r.BootAggregateOnly != "" {
		fmt.Fprintf(w, "\nboot_aggregate is only in %s: it depends on the boot (PCRs 0-9) and the verifier supplies it from the quote, so it is not counted.\n", r.BootAggregateOnly)
	}
	if r.same() {
		fmt.Fprintln(w, "\nsame: A and B allow the same file content.")
	} else {
		fmt.Fprintf(w, "\ndifferent: %d false-alarm path(s) if A judges B's devices; %d path(s) A allows beyond B.\n", len(r.OnlyB), len(r.OnlyA))
	}
}

func shortDigests(ds []string) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		if len(d) > 16 {
			d = d[:16] + "…"
		}
		out[i] = d
	}
	return out
}

func policyDiff(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rat policy diff", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, policyDiffUsage) }
	asJSON := fs.Bool("json", false, "print the differences as JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 2 {
		fmt.Fprintln(stderr, policyDiffUsage)
		return 2
	}
	a, err := loadPolicy(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "rat policy diff: %v\n", err)
		return 2
	}
	b, err := loadPolicy(fs.Arg(1))
	if err != nil {
		fmt.Fprintf(stderr, "rat policy diff: %v\n", err)
		return 2
	}
	r := diffPolicies(a, b)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if r.OnlyA == nil {
			r.OnlyA = []digestDiff{}
		}
		if r.OnlyB == nil {
			r.OnlyB = []digestDiff{}
		}
		if err := enc.Encode(r); err != nil {
			return 2
		}
	} else {
		r.write(stdout, fs.Arg(0), fs.Arg(1))
	}
	if r.same() {
		return 0
	}
	return 1
}
