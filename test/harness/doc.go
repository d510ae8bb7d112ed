// Package harness runs the real processes of the integration and e2e tests
// (rat-hub, rat-agent, Mosquitto, swtpm, qemu, ...) and talks to a running
// hub's HTTP API, so that test/integration and test/e2e share one way of
// starting a process on free loopback ports, stopping it by its PID and
// showing its log when a test fails.
//
// It owns process lifetime (Start, Stop, Kill, Wait), free ports, polling
// with a liveness bound (Eventually: a bound for a loaded machine, never a
// speed assertion), tool lookup that honours RAT_REQUIRE_INTEGRATION, and
// the hub API client with the JSON views the tests read.
//
// It is imported only by tests. It must not import the hub's or the
// device's packages: the tests it serves drive the binaries from outside,
// as an operator would.
package harness
