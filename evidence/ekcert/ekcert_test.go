package ekcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

// The chain test with real swtpm EK certificates is in device/tpm
// (TestEKCertificateChain); here: parser robustness.
func selfSigned(t testing.TB) []byte {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestVerifyRejectsUntrusted(t *testing.T) {
	if _, err := Verify(selfSigned(t), nil, x509.NewCertPool(), nil, time.Now()); err == nil {
		t.Fatal("a self-signed certificate outside the roots was accepted")
	}
	if _, err := Verify([]byte("not a certificate"), nil, x509.NewCertPool(), nil, time.Now()); err == nil {
		t.Fatal("garbage accepted")
	}
}

func FuzzVerify(f *testing.F) {
	f.Add(selfSigned(f))
	roots := x509.NewCertPool()
	f.Fuzz(func(t *testing.T, der []byte) {
		if _, err := Verify(der, nil, roots, nil, time.Now()); err == nil {
			t.Fatal("accepted with an empty root pool")
		}
	})
}
