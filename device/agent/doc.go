// Package agent is the device side of continuous attestation: it enrolls
// the device's TPM with the hub (EK, AK, credential activation), then
// watches the IMA measurement list and sends a quote with each new delta —
// and a heartbeat quote at a fixed interval otherwise — through a durable
// outbox over MQTT.
//
// Every quote's qualifying data is the digest of the record's claims set
// (package evidence/claims): the hub's newest nonce, the sequence number,
// the digest of the previous quote, the boot id and the IMA position. Only
// the entries since the last record are sent, except after a reboot or when
// the hub asks for a resync.
//
// The agent is built into device images: it imports go-tpm, paho, bbolt and
// the evidence module, never hub-side packages, HTTP frameworks or
// sigstore-go.
package agent
