package runtimepolicy

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ratatouille/rat/evidence/failure"
	"github.com/ratatouille/rat/evidence/ima"
)

func TestEvaluate(t *testing.T) {
	s := filepath.Join(td, "create-policy-static")
	log1 := mustLog(t, filepath.Join(s, "test2/ascii_runtime_measurements-1"))
	log2 := mustLog(t, filepath.Join(s, "test2/ascii_runtime_measurements-2"))
	log3 := mustLog(t, filepath.Join(s, "test3/ascii_runtime_measurements-1"))
	pol := func(file string) *Policy {
		p, err := Parse(readFile(t, "create-policy-static/"+file))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	tampered := log1[1]
	tampered.Digest = bytes.Repeat([]byte{0xab}, 32)
	stranger := log1[1]
	stranger.Path = "/tmp/evil"
	excluded := stranger
	excluded.Path = "/home/xyz/evil"
	violation := stranger
	violation.TemplateHash = make([]byte, 20)
	violation.Digest = make([]byte, 32)
	unknownTmpl := log1[1]
	unknownTmpl.TemplateName = "ima-foo"
	excl := pol("test3/output1.json")

	tests := []struct {
		name     string
		policy   *Policy
		entries  []ima.Entry
		opts     []EvalOption
		wantIDs  []string
		wantPath string
	}{
		{name: "own log passes", policy: pol("test2/output1.json"), entries: log1},
		{name: "ima-sig log passes", policy: pol("test3/output1.json"), entries: log3},
		{name: "tampered digest", policy: pol("test2/output1.json"), entries: []ima.Entry{tampered}, wantIDs: []string{failure.IMARuntimePolicyHash}, wantPath: tampered.Path},
		{name: "unknown path", policy: pol("test2/output1.json"), entries: []ima.Entry{stranger}, wantIDs: []string{failure.IMANotInAllowlist}, wantPath: "/tmp/evil"},
		{name: "excluded path", policy: excl, entries: []ima.Entry{excluded}},
		{name: "not excluded elsewhere", policy: excl, entries: []ima.Entry{stranger}, wantIDs: []string{failure.IMANotInAllowlist}, wantPath: "/tmp/evil"},
		{name: "violation", policy: pol("test2/output1.json"), entries: []ima.Entry{violation}, wantIDs: []string{failure.IMANotInAllowlist}, wantPath: "/tmp/evil"},
		{name: "unknown template", policy: pol("test2/output1.json"), entries: []ima.Entry{unknownTmpl}, wantIDs: []string{failure.IMAParsingError}},
		{name: "ima-buf without ima-buf policy", policy: pol("test2/output1.json"), entries: log2[:1], wantIDs: []string{failure.IMANotInAllowlist}, wantPath: "dm_table_load"},
		{name: "ima-buf allowed, keyrings not", policy: pol("test2/output3.json"), entries: log2, wantIDs: []string{failure.IMANotInAllowlist, failure.IMANotInAllowlist, failure.IMANotInAllowlist, failure.IMANotInAllowlist}},
		{name: "ima-buf + builtin ignored, .ima not in keyrings", policy: pol("test2/output4.json"), entries: log2, wantIDs: []string{failure.IMANotInAllowlist}, wantPath: ".ima"},
		{name: "ima-buf + keyrings", policy: pol("test2/output6.json"), entries: log2},
		{name: "missing policy", policy: nil, entries: log1, wantIDs: []string{failure.RuntimePolicyMissing}},
		{name: "boot aggregate from quote", policy: withoutBootAggregate(t, pol("test2/output1.json")), entries: log1[:1], opts: []EvalOption{WithBootAggregates(hex.EncodeToString(log1[0].Digest))}},
		{name: "boot aggregate absent", policy: withoutBootAggregate(t, pol("test2/output1.json")), entries: log1[:1], wantIDs: []string{failure.IMANotInAllowlist}, wantPath: "boot_aggregate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs := Evaluate(tc.policy, tc.entries, tc.opts...)
			var ids []string
			for _, e := range evs {
				ids = append(ids, e.ID)
			}
			if strings.Join(ids, ",") != strings.Join(tc.wantIDs, ",") {
				t.Fatalf("events %v, want ids %v", evs, tc.wantIDs)
			}
			if tc.wantPath != "" {
				if evs[0].Fields["path"] != tc.wantPath || !strings.Contains(evs[0].Context, tc.wantPath) {
					t.Fatalf("event %v does not name %s", evs[0], tc.wantPath)
				}
				if evs[0].Fields["got"] == "" {
					t.Fatalf("event %v lacks the seen digest", evs[0])
				}
			}
		})
	}
}

func withoutBootAggregate(t testing.TB, p *Policy) *Policy {
	q := clonePolicy(p)
	delete(q.Digests, "boot_aggregate")
	return q
}

func FuzzParse(f *testing.F) {
	for _, p := range []string{
		"policy/runtime-policy-test.json", "policy/sign-runtime-policy.json",
		"policy/sign-runtime-policy-bogus.json", "policy/sign-runtime-policy-empty.json",
		"create-policy-static/test2/output6.json", "create-policy-static/test3/output2.json",
	} {
		b, err := os.ReadFile(filepath.Join(td, p))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte("{"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			if p != nil {
				t.Fatal("policy returned with error")
			}
			return
		}
		out, err := p.Marshal()
		if err != nil {
			t.Fatalf("Marshal of parsed policy: %v", err)
		}
		if _, err := Parse(out); err != nil {
			t.Fatalf("re-Parse of marshalled policy: %v", err)
		}
		_ = Evaluate(p, []ima.Entry{{TemplateName: "ima-ng", Path: "/bin/sh", Digest: []byte{1}}})
	})
}

// The events' ids, contexts and fields are what operators and docs match
// on: this pins them exactly (they were checked against the
// implementation before the allocation-free digest comparison).
func TestEvaluateEventsExact(t *testing.T) {
	log1 := mustLog(t, filepath.Join(td, "create-policy-static", "test2/ascii_runtime_measurements-1"))
	p, err := FromEntries(log1[:2])
	if err != nil {
		t.Fatal(err)
	}
	ba := hex.EncodeToString(log1[0].Digest)
	file := log1[1]
	fd := hex.EncodeToString(file.Digest)
	tampered := file
	tampered.Digest = bytes.Repeat([]byte{0xab}, len(file.Digest))
	ab := hex.EncodeToString(tampered.Digest)
	stranger := file
	stranger.Path = "/tmp/evil"
	violation := stranger
	violation.TemplateHash = make([]byte, 20)
	tmpl := file.TemplateName
	if log1[0].TemplateName != tmpl {
		t.Fatalf("templates %s and %s: the cases below assume one", log1[0].TemplateName, tmpl)
	}
	upper := clonePolicy(p)
	upper.Digests[file.Path] = []string{strings.ToUpper(fd)}

	tests := []struct {
		name    string
		policy  *Policy
		entry   ima.Entry
		opts    []EvalOption
		id, ctx string
		fields  map[string]string
	}{
		{name: "hash mismatch", policy: p, entry: tampered, id: failure.IMARuntimePolicyHash,
			ctx:    "entry 1: hash of " + file.Path + " not in runtime policy digests: got sha256:" + ab + ", expected one of " + fd,
			fields: map[string]string{"entry": "1", "template": tmpl, "path": file.Path, "got": ab, "alg": "sha256", "section": "digests", "expected": fd}},
		{name: "not found", policy: p, entry: stranger, id: failure.IMANotInAllowlist,
			ctx:    "entry 1: /tmp/evil not found in runtime policy digests (digest sha256:" + fd + ")",
			fields: map[string]string{"entry": "1", "template": tmpl, "path": "/tmp/evil", "got": fd, "alg": "sha256", "section": "digests"}},
		{name: "violation", policy: p, entry: violation, id: failure.IMANotInAllowlist,
			ctx:    "entry 1: /tmp/evil not found in runtime policy digests (digest sha256:" + fd + ") (IMA violation entry: file measured while open for write)",
			fields: map[string]string{"entry": "1", "template": tmpl, "path": "/tmp/evil", "got": fd, "alg": "sha256", "section": "digests", "violation": "true"}},
		{name: "uppercase policy digest does not match", policy: upper, entry: file, id: failure.IMARuntimePolicyHash,
			ctx:    "entry 1: hash of " + file.Path + " not in runtime policy digests: got sha256:" + fd + ", expected one of " + strings.ToUpper(fd),
			fields: map[string]string{"entry": "1", "template": tmpl, "path": file.Path, "got": fd, "alg": "sha256", "section": "digests", "expected": strings.ToUpper(fd)}},
		{name: "boot aggregates from the quote are added", policy: withoutBootAggregate(t, p), entry: tampered, opts: []EvalOption{WithBootAggregates(strings.ToUpper(fd), fd)}, id: failure.IMARuntimePolicyHash,
			ctx:    "entry 1: hash of " + file.Path + " not in runtime policy digests: got sha256:" + ab + ", expected one of " + fd,
			fields: map[string]string{"entry": "1", "template": tmpl, "path": file.Path, "got": ab, "alg": "sha256", "section": "digests", "expected": fd}},
		{name: "boot aggregate mismatch lists policy and quote values", policy: p, entry: func() ima.Entry { e := log1[0]; e.Digest = tampered.Digest[:len(e.Digest)]; return e }(), opts: []EvalOption{WithBootAggregates(strings.ToUpper(fd), ba)}, id: failure.IMARuntimePolicyHash,
			ctx:    "entry 1: hash of boot_aggregate not in runtime policy digests: got " + log1[0].DigestAlg + ":" + ab[:2*len(log1[0].Digest)] + ", expected one of " + ba + "," + fd,
			fields: map[string]string{"entry": "1", "template": tmpl, "path": "boot_aggregate", "got": ab[:2*len(log1[0].Digest)], "alg": log1[0].DigestAlg, "section": "digests", "expected": ba + "," + fd}},
		{name: "boot aggregate absent from policy and quote", policy: withoutBootAggregate(t, p), entry: log1[0], id: failure.IMANotInAllowlist,
			ctx:    "entry 1: boot_aggregate not found in runtime policy digests (digest " + log1[0].DigestAlg + ":" + ba + ")",
			fields: map[string]string{"entry": "1", "template": tmpl, "path": "boot_aggregate", "got": ba, "alg": log1[0].DigestAlg, "section": "digests"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs := Evaluate(tc.policy, []ima.Entry{tc.entry}, tc.opts...)
			if len(evs) != 1 {
				t.Fatalf("events %v, want one", evs)
			}
			e := evs[0]
			if e.ID != tc.id || e.Severity != failure.Critical || e.Context != tc.ctx {
				t.Errorf("event %s %s %q\nwant  %s critical %q", e.ID, e.Severity, e.Context, tc.id, tc.ctx)
			}
			if fmt.Sprint(e.Fields) != fmt.Sprint(tc.fields) {
				t.Errorf("fields %v\nwant   %v", e.Fields, tc.fields)
			}
		})
	}
	// Accepted: the entry's own digest, and boot_aggregate by a quote value.
	if evs := Evaluate(p, log1[:2]); len(evs) != 0 {
		t.Errorf("own entries: %v", evs)
	}
	if evs := Evaluate(withoutBootAggregate(t, p), log1[:1], WithBootAggregates(strings.ToUpper(ba))); len(evs) != 0 {
		t.Errorf("boot_aggregate given by the quote: %v", evs)
	}
}

// isHexOf must agree with comparing against hex.EncodeToString for every
// length (the eight-byte words and the tail), every byte value in every
// position, and any one changed character (case included).
func TestIsHexOf(t *testing.T) {
	var ds [][]byte
	for n := 0; n <= 70; n++ {
		d := make([]byte, n)
		for j := range d {
			d[j] = byte(n*31 + j*97)
		}
		ds = append(ds, d)
	}
	for b := 0; b < 256; b++ {
		d := bytes.Repeat([]byte{byte(b)}, 17)
		d[3], d[12] = byte(255-b), byte(b*7)
		ds = append(ds, d)
	}
	for _, d := range ds {
		h := hex.EncodeToString(d)
		if !isHexOf(h, d) {
			t.Fatalf("isHexOf(%q, %x) = false", h, d)
		}
		if len(d) > 0 && isHexOf(h[1:], d) {
			t.Fatalf("isHexOf accepts a shorter string for %x", d)
		}
		for i := 0; i < len(h); i++ {
			for _, c := range []byte{'0', '9', 'a', 'f', 'A', 'F', 'g', 0} {
				if c == h[i] {
					continue
				}
				bad := []byte(h)
				bad[i] = c
				if isHexOf(string(bad), d) {
					t.Fatalf("isHexOf(%q, %x) = true", bad, d)
				}
			}
		}
	}
}
