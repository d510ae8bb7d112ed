package rollout

import (
	"fmt"
	"slices"
	"sort"

	"github.com/ratatouille/rat/evidence/runtimepolicy"
)

// Union returns the policy that allows an IMA entry exactly when one of
// ps allows it: digests, keyrings and ima-buf merged, excludes merged
// (an entry one policy excludes is one that policy accepts). It is the
// policy Judge's two-release decisions mean. Policies that disagree on
// verification keys or the log hash algorithm are refused rather than
// merged, because either choice would silently change what one of them
// accepts.
func Union(ps ...*runtimepolicy.Policy) (*runtimepolicy.Policy, error) {
	if len(ps) == 0 {
		return nil, fmt.Errorf("rollout: union of no policies")
	}
	for i, p := range ps {
		if p == nil {
			return nil, fmt.Errorf("rollout: union: policy %d is missing", i)
		}
		if p.VerificationKeys != ps[0].VerificationKeys {
			return nil, fmt.Errorf("rollout: union: policies carry different verification keys")
		}
		if p.IMA.LogHashAlg != ps[0].IMA.LogHashAlg {
			return nil, fmt.Errorf("rollout: union: log hash algorithms %q and %q differ", ps[0].IMA.LogHashAlg, p.IMA.LogHashAlg)
		}
	}
	digests := map[string][]string{}
	var excludes []string
	for _, p := range ps[1:] {
		merge(digests, p.Digests)
		for _, e := range p.Excludes {
			if !slices.Contains(excludes, e) {
				excludes = append(excludes, e)
			}
		}
	}
	u, err := runtimepolicy.FromEntries(nil, runtimepolicy.WithBase(ps[0]), runtimepolicy.WithAllowlist(digests), runtimepolicy.WithExcludes(excludes...))
	if err != nil {
		return nil, fmt.Errorf("rollout: union: %w", err)
	}
	u.Meta = ps[0].Meta
	for _, p := range ps[1:] {
		merge(u.Keyrings, p.Keyrings)
		merge(u.IMABuf, p.IMABuf)
		for _, k := range p.IMA.IgnoredKeyrings {
			// A keyring ignored by one policy is accepted by it.
			if !slices.Contains(u.IMA.IgnoredKeyrings, k) {
				u.IMA.IgnoredKeyrings = append(u.IMA.IgnoredKeyrings, k)
			}
		}
	}
	sort.Strings(u.IMA.IgnoredKeyrings)
	return u, nil
}

func merge(dst, src map[string][]string) {
	for k, ds := range src {
		for _, d := range ds {
			if !slices.Contains(dst[k], d) {
				dst[k] = append(dst[k], d)
			}
		}
	}
}
