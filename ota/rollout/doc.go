// Package rollout holds the release lifecycle rules the hub applies:
// the Release record (group, version, image digest, policy digest, state),
// which state transitions are allowed (no approval without a signed
// policy digest), and which release policies judge a device during a
// rollout window (N, N+1, or their union for a bounded time after a
// package-level update without reboot), and when the hub moves a release
// on by itself (Advance: approved → rolling-out → complete as devices
// report it).
//
// It is pure: no clock (callers pass times), no storage, no network, no
// signature verification (the hub verifies the Sigstore bundle and then
// records the verified digest here). It must not import hub packages.
package rollout
