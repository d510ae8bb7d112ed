package runtimepolicy_test

import (
	"fmt"

	"github.com/ratatouille/rat/evidence/ima"
	"github.com/ratatouille/rat/evidence/runtimepolicy"
)

func Example() {
	log := []ima.Entry{
		{TemplateName: "ima-ng", DigestAlg: "sha1", Path: "/usr/bin/true", Digest: []byte{0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14}},
	}
	// Baseline: a policy from a known-good log.
	pol, err := runtimepolicy.FromEntries(log, runtimepolicy.WithExcludes("/tmp/"))
	if err != nil {
		panic(err)
	}
	raw, _ := pol.Marshal()
	pol, err = runtimepolicy.Parse(raw) // validates against Keylime's schema
	if err != nil {
		panic(err)
	}

	// Later: a new binary runs.
	log = append(log, ima.Entry{TemplateName: "ima-ng", DigestAlg: "sha256", Path: "/usr/local/bin/evil", Digest: make([]byte, 32)})
	log = append(log, ima.Entry{TemplateName: "ima-ng", DigestAlg: "sha256", Path: "/tmp/scratch", Digest: make([]byte, 32)})
	for _, ev := range runtimepolicy.Evaluate(pol, log) {
		fmt.Println(ev.ID, ev.Fields["path"])
	}
	// Output:
	// ima.validation.ima-ng.not_in_allowlist /usr/local/bin/evil
}
