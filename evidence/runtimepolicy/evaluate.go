package runtimepolicy

import (
	"crypto/x509"
	"encoding/binary"
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
	ev := evaluator{p: p}
	if len(cfg.bootAggregates) > 0 {
		// The policy's boot_aggregate digests and these, without copying
		// the whole digest map for the one path.
		ba := slices.Clone(p.Digests["boot_aggregate"])
		for _, v := range cfg.bootAggregates {
			if v = strings.ToLower(v); !slices.Contains(ba, v) {
				ba = append(ba, v)
			}
		}
		ev.bootAggregates, ev.haveBootAggregates = ba, true
	}
	var out []failure.Event
	for i := range entries {
		if e, bad := ev.entry(i, &entries[i]); bad {
			out = append(out, e)
		}
	}
	return out
}

// evaluator holds what one Evaluate call works out once rather than per
// entry.
type evaluator struct {
	p *Policy
	// bootAggregates replaces p.Digests["boot_aggregate"] when
	// haveBootAggregates (WithBootAggregates was given values).
	bootAggregates     []string
	haveBootAggregates bool
	// keys are p's verification keys, decoded at the first signed entry.
	keys     []sigKey
	haveKeys bool
}

func (ev *evaluator) entry(i int, e *ima.Entry) (failure.Event, bool) {
	p := ev.p
	switch e.TemplateName {
	case "ima-sig":
		// Keylime _validate_ima_sig: a signature that verifies with a
		// verification key accepts the entry (unless excluded, which also
		// accepts); otherwise fall back to the digest list.
		if len(e.Signature) > 0 && !p.Excluded(e.Path) {
			if !ev.haveKeys {
				ev.keys, ev.haveKeys = p.sigKeys(), true
			}
			if len(ev.keys) > 0 && verifyIMASig(ev.keys, e.Signature, e.Digest) {
				return failure.Event{}, false
			}
		}
		return ev.checkDigests(i, e)
	case "ima", "ima-ng":
		return ev.checkDigests(i, e)
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

// checkDigests judges a file entry against the "digests" section, with
// the boot aggregates given to Evaluate for "boot_aggregate".
func (ev *evaluator) checkDigests(i int, e *ima.Entry) (failure.Event, bool) {
	if ev.haveBootAggregates && e.Path == "boot_aggregate" {
		if ev.p.Excluded(e.Path) {
			return failure.Event{}, false
		}
		return judge(ev.bootAggregates, true, "digests", i, e)
	}
	return checkList(ev.p, ev.p.Digests, "digests", i, e)
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

func checkList(p *Policy, list map[string][]string, section string, i int, e *ima.Entry) (failure.Event, bool) {
	if p.Excluded(e.Path) {
		return failure.Event{}, false
	}
	accept, ok := list[e.Path]
	return judge(accept, ok, section, i, e)
}

// judge accepts e when its digest, in lowercase hex, is one of accept (the
// policy's list for its path; ok is false when the path has none).
func judge(accept []string, ok bool, section string, i int, e *ima.Entry) (failure.Event, bool) {
	if ok {
		for _, a := range accept {
			if isHexOf(a, e.Digest) {
				return failure.Event{}, false
			}
		}
	}
	got := hex.EncodeToString(e.Digest)
	if !ok {
		return event(failure.IMANotInAllowlist, i, e,
			fmt.Sprintf("entry %d: %s not found in runtime policy %s (digest %s:%s)", i+1, e.Path, section, e.DigestAlg, got),
			map[string]string{"section": section}), true
	}
	return event(failure.IMARuntimePolicyHash, i, e,
		fmt.Sprintf("entry %d: hash of %s not in runtime policy %s: got %s:%s, expected one of %s", i+1, e.Path, section, e.DigestAlg, got, strings.Join(accept, ",")),
		map[string]string{"section": section, "expected": strings.Join(accept, ",")}), true
}

// isHexOf reports whether s == hex.EncodeToString(d) (lowercase hex)
// without encoding d: eight digest bytes at a time are turned into sixteen
// hex digits in two 64-bit words and compared with s's bytes. This is the
// evaluation's inner comparison, once per entry and accepted digest.
func isHexOf(s string, d []byte) bool {
	if len(s) != 2*len(d) {
		return false
	}
	i := 0
	for ; i+8 <= len(d); i += 8 {
		x := binary.LittleEndian.Uint64(d[i:])
		t := s[2*i : 2*i+16]
		if hexDigits4(uint32(x)) != le64(t[:8]) || hexDigits4(uint32(x>>32)) != le64(t[8:]) {
			return false
		}
	}
	const digits = "0123456789abcdef"
	for ; i < len(d); i++ {
		if s[2*i] != digits[d[i]>>4] || s[2*i+1] != digits[d[i]&0x0f] {
			return false
		}
	}
	return true
}

// hexDigits4 returns the eight lowercase hex digits of the four bytes of
// v (first byte in the low bits), first digit in the low byte, as a
// little-endian load of the digits would read them.
func hexDigits4(v uint32) uint64 {
	y := uint64(v)
	// One byte per 16-bit lane, then its high nibble in the lane's low
	// byte and its low nibble in the high byte.
	y = (y | y<<16) & 0x0000ffff0000ffff
	y = (y | y<<8) & 0x00ff00ff00ff00ff
	n := (y>>4)&0x000f000f000f000f | (y&0x000f000f000f000f)<<8
	// Each byte is a nibble 0..15: '0'+n, and 'a'-'0'-10 = 39 more for
	// n >= 10 (n+6 carries into bit 4 exactly then; no byte overflows).
	letters := ((n + 0x0606060606060606) >> 4) & 0x0101010101010101
	return n + 0x3030303030303030 + letters*39
}

// le64 is binary.LittleEndian.Uint64 of an 8-byte string.
func le64(t string) uint64 {
	_ = t[7]
	return uint64(t[0]) | uint64(t[1])<<8 | uint64(t[2])<<16 | uint64(t[3])<<24 |
		uint64(t[4])<<32 | uint64(t[5])<<40 | uint64(t[6])<<48 | uint64(t[7])<<56
}

func event(id string, i int, e *ima.Entry, ctx string, extra map[string]string) failure.Event {
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
