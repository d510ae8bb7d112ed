package runtimepolicy

import (
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/ratatouille/rat/evidence/failure"
	"github.com/ratatouille/rat/evidence/ima"
)

type evalConfig struct {
	bootAggregates []string
}

// EvalOption configures Evaluate.
type EvalOption func(*evalConfig)

// WithBootAggregates adds boot_aggregate values computed from the quoted
// PCRs 0-9 to the allowed "boot_aggregate" digests, as Keylime's verifier
// does with its boot_aggregates argument.
func WithBootAggregates(hexValues ...string) EvalOption {
	return func(c *evalConfig) { c.bootAggregates = append(c.bootAggregates, hexValues...) }
}

// Evaluate judges IMA entries against p with Keylime's semantics
// (keylime/ima/ima.py _validate_ima_ng/_validate_ima_sig/_validate_ima_buf)
// and returns one event per failing entry, in log order. A nil policy is
// itself a failure (fail closed).
//
// An ima-sig entry whose IMA v2 signature verifies with one of the
// policy's verification-keys is accepted; otherwise it is judged by its
// digest (Keylime's fallback). Keys loaded onto keyrings through ima-buf
// entries are not used for signatures (Keylime does use them). Violation
// entries (all-zero template hash) are judged like any other entry, as
// Keylime does, and their events say so.
func Evaluate(p *Policy, entries []ima.Entry, opts ...EvalOption) []failure.Event {
	if p == nil {
		return []failure.Event{{ID: failure.RuntimePolicyMissing, Severity: failure.Critical, Context: "no runtime policy"}}
	}
	var cfg evalConfig
	for _, o := range opts {
		o(&cfg)
	}
	digests := p.Digests
	if len(cfg.bootAggregates) > 0 {
		digests = make(map[string][]string, len(p.Digests)+1)
		for k, v := range p.Digests {
			digests[k] = v
		}
		ba := slices.Clone(p.Digests["boot_aggregate"])
		for _, v := range cfg.bootAggregates {
			if v = strings.ToLower(v); !slices.Contains(ba, v) {
				ba = append(ba, v)
			}
		}
		digests["boot_aggregate"] = ba
	}
	var out []failure.Event
	for i, e := range entries {
		if ev, bad := evalEntry(p, digests, i, e); bad {
			out = append(out, ev)
		}
	}
	return out
}

func evalEntry(p *Policy, digests map[string][]string, i int, e ima.Entry) (failure.Event, bool) {
	switch e.TemplateName {
	case "ima-sig":
		// Keylime _validate_ima_sig: a signature that verifies with a
		// verification key accepts the entry (unless excluded, which also
		// accepts); otherwise fall back to the digest list.
		if len(e.Signature) > 0 && !p.Excluded(e.Path) {
			if keys := p.sigKeys(); len(keys) > 0 && verifyIMASig(keys, e.Signature, e.Digest) {
				return failure.Event{}, false
			}
		}
		return checkList(p, digests, "digests", i, e)
	case "ima", "ima-ng":
		return checkList(p, digests, "digests", i, e)
	case "ima-buf":
		if isKey(e.Buf) {
			ignored := p.IMA.IgnoredKeyrings
			if slices.Contains(ignored, "*") || slices.Contains(ignored, e.Path) {
				return failure.Event{}, false
			}
			return checkList(p, p.Keyrings, "keyrings", i, e)
		}
		return checkList(p, p.IMABuf, "ima-buf", i, e)
	}
	return event(failure.IMAParsingError, i, e, fmt.Sprintf("entry %d: unknown template %q", i+1, e.TemplateName), nil), true
}

// isKey reports whether an ima-buf buffer is a key (DER certificate or
// public key), as Keylime's file_signatures.get_pubkey decides.
func isKey(buf []byte) bool {
	if len(buf) == 0 {
		return false
	}
	if _, err := x509.ParseCertificate(buf); err == nil {
		return true
	}
	_, err := x509.ParsePKIXPublicKey(buf)
	return err == nil
}

func checkList(p *Policy, list map[string][]string, section string, i int, e ima.Entry) (failure.Event, bool) {
	if p.Excluded(e.Path) {
		return failure.Event{}, false
	}
	got := hex.EncodeToString(e.Digest)
	accept, ok := list[e.Path]
	if !ok {
		return event(failure.IMANotInAllowlist, i, e,
			fmt.Sprintf("entry %d: %s not found in runtime policy %s (digest %s:%s)", i+1, e.Path, section, e.DigestAlg, got),
			map[string]string{"section": section}), true
	}
	if !slices.Contains(accept, got) {
		return event(failure.IMARuntimePolicyHash, i, e,
			fmt.Sprintf("entry %d: hash of %s not in runtime policy %s: got %s:%s, expected one of %s", i+1, e.Path, section, e.DigestAlg, got, strings.Join(accept, ",")),
			map[string]string{"section": section, "expected": strings.Join(accept, ",")}), true
	}
	return failure.Event{}, false
}

func event(id string, i int, e ima.Entry, ctx string, extra map[string]string) failure.Event {
	f := map[string]string{
		"entry":    fmt.Sprint(i + 1),
		"template": e.TemplateName,
		"path":     e.Path,
		"got":      hex.EncodeToString(e.Digest),
	}
	if e.DigestAlg != "" {
		f["alg"] = e.DigestAlg
	}
	for k, v := range extra {
		f[k] = v
	}
	if e.IsViolation() {
		f["violation"] = "true"
		ctx += " (IMA violation entry: file measured while open for write)"
	}
	return failure.Event{ID: id, Severity: failure.Critical, Context: ctx, Fields: f}
}
