package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"testing"
	"time"
)

// TestMain lets the test binary be the hub and calibration children, as the
// rat-loadgen binary is (-hub child runs os.Executable() hub ..., and then
// os.Executable() calibrate ... before and after the run).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "calibrate" {
		if err := calibrateMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "calibrate:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if len(os.Args) > 1 && os.Args[1] == "hub" {
		if err := hubMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "hub:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

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
		hub    string
		cpus   string
	}{
		{"embedded broker, closed loop", "embedded", 0, "inproc", ""},
		{"embedded broker, open loop", "embedded", 200, "inproc", ""},
		{"mosquitto, closed loop", "mosquitto", 0, "inproc", ""},
		{"hub child pinned to the last CPU", "embedded", 0, "child", fmt.Sprint(max(runtime.NumCPU()-1, 0))},
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
			if runtime.NumCPU() < 2 {
				tc.cpus = "" // one CPU: the child runs, unpinned
			}
			procs := runtime.GOMAXPROCS(0)
			o := options{Devices: 3, Records: 8, Delta: 2, Rate: tc.rate, Broker: tc.broker, Hub: tc.hub, HubCPUs: tc.cpus, Timeout: time.Minute}
			r, cost, err := run(o)
			if got := runtime.GOMAXPROCS(0); got != procs {
				t.Errorf("GOMAXPROCS %d after the run, was %d: the generator stayed pinned", got, procs)
			}
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
			// A hub child is calibrated on its CPUs before and after the run.
			if calibrated := r.BareBefore > 0 && r.BareAfter > 0 && r.BareVerify > 0; calibrated != (tc.hub == "child") {
				t.Fatalf("hub %s: bare verify calibrated %v, %v", tc.hub, r.BareBefore, r.BareAfter)
			}
		})
	}
}

func TestParseCPUs(t *testing.T) {
	n := runtime.NumCPU()
	for _, tc := range []struct {
		in   string
		want []int
	}{
		{"0", []int{0}},
		{fmt.Sprintf("0-%d", n-1), nil}, // every CPU: checked below
		{"x", nil},
		{"-1", nil},
		{fmt.Sprint(n), nil},
		{"1-0", nil},
	} {
		got, err := parseCPUs(tc.in)
		switch {
		case tc.in == fmt.Sprintf("0-%d", n-1):
			if err != nil || len(got) != n || len(otherCPUs(got)) != 0 {
				t.Errorf("parseCPUs(%q) = %v, %v; want all %d CPUs", tc.in, got, err, n)
			}
		case tc.want == nil:
			if err == nil {
				t.Errorf("parseCPUs(%q) = %v, want an error", tc.in, got)
			}
		case err != nil || !slices.Equal(got, tc.want):
			t.Errorf("parseCPUs(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
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
