// Package storesource is the hub's ear.Source: it reads a device's current
// judgement from the hub store (hub/store) and turns it into the
// ear.Appraisal the token issuer signs, and it applies the issuer's
// Reinstate rule once the hub says TRUSTED again after a revocation.
//
// It owns only that mapping. It lives beside hub/ear rather than inside it
// so that hub/ear keeps no dependency on the hub's storage; it must not
// import hub/server, hub/api or the device module.
package storesource
