// Package verifier is the hub's judgement of device messages (the RATS
// verifier in the background-check model): enrollment by credential
// activation, and each evidence record's quote, claims, nonce chain, IMA
// delta and runtime-policy verdict.
//
// It is pure with respect to I/O: it takes the device's stored record and
// one decoded message, and returns the updated record, the events to append
// and the reply to send. The server persists and publishes. This keeps the
// checks testable message by message, and the order of checks explicit:
// sequence and chain before the signature, the signature before anything
// the signature covers is believed, the IMA replay before the policy.
// The policy comes from Config.Policies (the group's active policy) or,
// for a group with OTA releases, from Config.Releases, which judges by
// the release the device reports (release.go records each switch).
//
// It imports the evidence module and hub/store's types; it must not import
// MQTT, HTTP or bbolt.
package verifier
