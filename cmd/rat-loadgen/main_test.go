package main

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestSmoke is the CI-sized run of the harness (make bench runs the full
// one): a few devices, each enrolled with its own simulator EK/AK, publish
// all their pre-generated records to an in-process hub; every record must be
// accepted and every device TRUSTED. It asserts correctness only, never
// speed.
func TestSmoke(t *testing.T) {
	cases := []struct {
		name   string
		broker string
		rate   int
	}{
		{"embedded broker, closed loop", "embedded", 0},
		{"embedded broker, open loop", "embedded", 200},
		{"mosquitto, closed loop", "mosquitto", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.broker == "mosquitto" {
				if _, err := exec.LookPath("mosquitto"); err != nil {
					if os.Getenv("RAT_REQUIRE_INTEGRATION") == "1" {
						t.Fatal("mosquitto is required (RAT_REQUIRE_INTEGRATION=1)")
					}
					t.Skip("mosquitto not installed")
				}
			}
			o := options{Devices: 3, Records: 8, Delta: 2, Rate: tc.rate, Broker: tc.broker, Hub: "inproc", Timeout: time.Minute}
			r, cost, err := run(o)
			if err != nil {
				t.Fatal(err)
			}
			if cost.Records != o.Devices*o.Records || cost.IMAEntries == 0 {
				t.Fatalf("pre-generated %d records with %d IMA entries", cost.Records, cost.IMAEntries)
			}
			if r.Sent != cost.Records || int(r.Accepted) != r.Sent || r.Rejected != 0 {
				t.Fatalf("sent %d, accepted %d, rejected %d (%s)", r.Sent, r.Accepted, r.Rejected, r.FirstProblem)
			}
			if int(r.Trusted) != r.Sent {
				t.Fatalf("%d of %d acks TRUSTED (%s)", r.Trusted, r.Sent, r.FirstProblem)
			}
		})
	}
}

// TestRecordsBound checks the nonce-window bound on pre-generated records.
func TestRecordsBound(t *testing.T) {
	for _, n := range []int{0, maxRecords + 1} {
		if _, _, err := pregenerate("tcp://127.0.0.1:1", "x", 1, n, 1, nil); err == nil {
			t.Errorf("%d records per device accepted", n)
		}
	}
}
