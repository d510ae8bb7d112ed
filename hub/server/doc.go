// Package server runs the hub: it takes devices' messages from the MQTT
// broker (the embedded one through its inline client, in process; an
// external one, such as Mosquitto, through one MQTT client session with one
// subscription, so each device's messages stay in order), hands them, in
// order, to the verifier, persists the outcome before it acknowledges
// anything, publishes replies, runs revocation actions, marks silent
// devices STALE and manages runtime policies per group (activation
// re-judges the group's devices), and OTA releases per group
// (releases.go: a group with releases judges each device by the signed
// policy of the release it reports, through ota/rollout's rules).
//
// Messages of one device are processed by one worker in arrival order;
// devices are spread over workers so that many are verified in parallel.
// Every device write goes through one function in the device's worker,
// which keeps two in-memory views current: a write-through cache of decoded
// device records (devcache.go) and the index of last verifications that
// the once-a-second staleness check reads instead of the store (stale.go).
//
// Replies: acks go at QoS 0 (replyQoS says why), everything else at QoS 1.
// SetGCDefaults (gc.go) is the Go collector's setting for a hub process.
//
// It imports the hub's store, verifier, broker and revoke packages,
// ota/rollout, the evidence module and automemlimit (gc.go); the HTTP API
// lives in hub/api.
package server
