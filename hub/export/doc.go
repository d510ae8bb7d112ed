// Package export writes a device's stored evidence as an offline bundle
// (evidence/bundle) for rat-audit: the device identity, the AK and the
// hub's signed AK–EK binding, each runtime policy in force with its
// Sigstore bundle, the evidence records exactly as the device sent them,
// and a summary signed by the hub. It also owns the hub's signing key.
//
// A span is widened to whole boots: PCR 10 can only be replayed from the
// start of a boot's measurement list, so the first record exported is the
// first of the boot in which the span starts.
//
// It imports hub/store and the evidence module; not MQTT, HTTP or the
// verifier.
package export
