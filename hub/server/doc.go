// Package server runs the hub: it connects to the MQTT broker (embedded or
// external), hands each device's messages, in order, to the verifier,
// persists the outcome before it acknowledges anything, publishes replies,
// runs revocation actions, marks silent devices STALE and manages runtime
// policies per group (activation re-judges the group's devices), and
// OTA releases per group (releases.go: a group with releases judges each
// device by the signed policy of the release it reports, through
// ota/rollout's rules).
//
// Messages of one device are processed by one worker in arrival order;
// devices are spread over workers so that many are verified in parallel.
//
// It imports the hub's store, verifier, broker and revoke packages,
// ota/rollout and the evidence module; the HTTP API lives in hub/api.
package server
