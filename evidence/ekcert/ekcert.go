package ekcert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"time"

	"github.com/ratatouille/rat/evidence/failure"
)

// oidSubjectAltName is critical in TCG EK certificates whose subject is
// empty; it holds a directoryName with TPM manufacturer, model and
// version (TCG attributes), which Go's x509 does not treat as handled.
var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// OIDEKCertificate is the TCG EK certificate extended key usage
// (tcg-kp-EKCertificate, 2.23.133.8.1).
var OIDEKCertificate = asn1.ObjectIdentifier{2, 23, 133, 8, 1}

// Verify checks der against roots (and intermediates) at time now and
// returns the certificate. ekPub, when not nil, must be the certified key.
func Verify(der []byte, ekPub crypto.PublicKey, roots, intermediates *x509.CertPool, now time.Time) (*x509.Certificate, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, failure.New(failure.EKCertInvalid, "EK certificate does not parse: %v", err)
	}
	// Go refuses an unhandled critical extension. The TCG SAN is the only
	// one we accept as handled; any other stays fatal.
	var unhandled []asn1.ObjectIdentifier
	for _, oid := range cert.UnhandledCriticalExtensions {
		if !oid.Equal(oidSubjectAltName) {
			unhandled = append(unhandled, oid)
		}
	}
	cert.UnhandledCriticalExtensions = unhandled
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: intermediates, CurrentTime: now,
		// EK certificates carry the TCG EKU (or none), never serverAuth.
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, failure.New(failure.EKCertInvalid, "EK certificate %q does not chain to a trusted manufacturer root: %v", cert.Subject.String(), err)
	}
	if ekPub != nil && !samePublic(cert.PublicKey, ekPub) {
		return nil, failure.New(failure.EKCertInvalid, "EK certificate certifies another key than the EK the device presented")
	}
	return cert, nil
}

func samePublic(a, b crypto.PublicKey) bool {
	switch k := a.(type) {
	case *rsa.PublicKey:
		return k.Equal(b)
	case *ecdsa.PublicKey:
		return k.Equal(b)
	}
	return false
}

// HasEKUsage reports whether cert names the TCG EK certificate EKU. Many
// manufacturers omit it, so Verify does not require it.
func HasEKUsage(cert *x509.Certificate) bool {
	for _, u := range cert.UnknownExtKeyUsage {
		if u.Equal(OIDEKCertificate) {
			return true
		}
	}
	return false
}

// String for errors from callers that want the certificate named.
func Describe(cert *x509.Certificate) string {
	return fmt.Sprintf("%s (issuer %s, serial %s)", cert.Subject, cert.Issuer, cert.SerialNumber)
}
