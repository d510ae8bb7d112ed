// Package integration tests the attestation loop end to end with real
// processes: the rat-hub, rat-agent, rat-devsim and rat binaries built from
// this tree, a real Mosquitto broker with its own password file and ACL, and
// a real swtpm, each started by the test on free loopback ports and stopped
// by PID (SIGKILL where a test says so).
//
// It owns the proof that the parts work together through the faults a
// fleet sees — broker, hub and agent killed mid-stream, a device offline for
// a while — and that the broker's ACL keeps one device from speaking for
// another. Tests skip when swtpm or Mosquitto is missing and fail instead
// under RAT_REQUIRE_INTEGRATION=1.
//
// It holds tests only: nothing may import it, and it must not import hub/
// packages (the hub is driven through its binary and HTTP API); it imports
// evidence/ and device/ packages only to build and read IMA logs and to
// extend swtpm's PCR 10 as the kernel would.
package integration
