// Package revoke runs the hub's revocation actions when a device turns
// UNTRUSTED: a signed webhook POST (HMAC-SHA256 over the body, so the
// receiver can check the hub sent it), an MQTT command to the device, and
// an exec hook. Each action is retried with backoff and every attempt is
// reported to an audit callback, so the device's history shows what was
// done, when and whether it worked.
//
// It must not import the verifier or the store.
package revoke
