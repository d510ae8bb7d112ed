package runtimepolicy

import (
	"bytes"
	"encoding/hex"
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
