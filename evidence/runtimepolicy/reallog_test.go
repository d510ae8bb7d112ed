package runtimepolicy

import (
	"path/filepath"
	"strconv"
	"testing"

	"github.com/ratatouille/rat/evidence/failure"
	"github.com/ratatouille/rat/evidence/ima"
)

// TestRealLogs generates a policy from a real kernel's log, checks the log
// passes it, then tampers with single entries and checks each is caught.
func TestRealLogs(t *testing.T) {
	for _, name := range []string{"ubuntu2404-kernel68-ima-ng-sha256.ascii", "keylime-tests-mixed-ima-ng-ima-buf.ascii"} {
		t.Run(name, func(t *testing.T) {
			entries := mustLog(t, filepath.Join(td, "ima", name))
			pol, err := FromEntries(entries, WithIMABuf(), WithKeyrings())
			if err != nil {
				t.Fatal(err)
			}
			if evs := Evaluate(pol, entries); len(evs) != 0 {
				t.Fatalf("log fails its own policy: %v", evs[0])
			}
			last := len(entries) - 1
			tamper := func(mut func(*ima.Entry)) []ima.Entry {
				es := append([]ima.Entry(nil), entries...)
				mut(&es[last])
				return es
			}
			tests := []struct {
				name    string
				entries []ima.Entry
				want    string
			}{
				{name: "changed digest", entries: tamper(func(e *ima.Entry) { e.Digest = append([]byte{^e.Digest[0]}, e.Digest[1:]...) }), want: failure.IMARuntimePolicyHash},
				{name: "new path", entries: tamper(func(e *ima.Entry) { e.Path = "/tmp/evil_ls" }), want: failure.IMANotInAllowlist},
			}
			for _, tc := range tests {
				evs := Evaluate(pol, tc.entries)
				if len(evs) != 1 || evs[0].ID != tc.want || evs[0].Fields["entry"] != strconv.Itoa(last+1) {
					t.Errorf("%s: events %v, want one %s at entry %d", tc.name, evs, tc.want, last+1)
				}
			}
		})
	}
}
