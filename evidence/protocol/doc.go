// Package protocol owns the device↔hub wire format: MQTT topic names and the
// CBOR messages carried on them (enrollment, evidence records, acks,
// commands). Both the agent (device module) and the hub use it, so it holds
// no transport, storage or TPM code: only types, bounds and codecs.
//
// Every message is a CBOR map with integer keys, key 0 holding the protocol
// version, and is refused above MaxMessage bytes before it is decoded. The
// decoder forbids duplicate keys, indefinite lengths, tags and unknown
// fields, so a message has one reading only.
//
// See docs/protocol.md for the topic layout, the nonce chain and the outbox
// semantics. It must not import anything outside the evidence module and the
// standard library except fxamacker/cbor.
package protocol
