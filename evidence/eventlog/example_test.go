package eventlog_test

import (
	"fmt"
	"os"

	"github.com/ratatouille/rat/evidence/eventlog"
)

// A verifier replays the device's firmware log, matches it to the PCRs of
// a quote it has already verified (here: the values that boot produced),
// and only then reads the Secure Boot state.
func Example() {
	raw, err := os.ReadFile("testdata/secureboot-on.bin")
	if err != nil {
		panic(err)
	}
	log, err := eventlog.Parse(raw)
	if err != nil {
		panic(err)
	}
	quoted, _ := log.Replay(eventlog.AlgSHA256) // from quote.Verify in real use
	fmt.Println("failures:", len(eventlog.Verify(log, eventlog.AlgSHA256, quoted)))
	st, err := log.SecureBoot()
	if err != nil {
		panic(err)
	}
	fmt.Printf("PCR 7 %x…, Secure Boot enabled: %v\n", quoted[7][:4], st.Enabled)
	// Output:
	// failures: 0
	// PCR 7 2f96e1f1…, Secure Boot enabled: true
}
