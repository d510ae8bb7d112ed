// Package broker is the hub's embedded MQTT broker (mochi-mqtt, in
// process) with the per-device access control the protocol relies on: a
// device may publish only under rat/v1/dt/<fleet>/<its id>/ and subscribe
// only to rat/v1/cmd/<fleet>/<its id>/. The hub in the same process uses
// the broker's inline client (Subscribe, Publish: no MQTT encoding, no TCP),
// which the ACL does not restrict; no network client may take its client id,
// and a network client may act as the hub only with Config.HubSecret.
//
// A device's identity is its MQTT username. With TLS and client
// certificates, the username must equal the certificate's common name, so
// the identity is the certificate's. Without TLS (loopback development and
// the demo) the username is taken on trust; the TPM evidence is still
// verified, so a device naming itself as another can disturb nothing but
// is refused by the ACL — see docs/operator.md for the equivalent Mosquitto
// ACL.
//
// It must not import the verifier or the store.
package broker
