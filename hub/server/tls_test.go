package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"math/big"
	"net"
	"path/filepath"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ratatouille/rat/hub/store"
	"github.com/ratatouille/rat/hub/verifier"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t *testing.T) *testCA {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test fleet CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	p := x509.NewCertPool()
	p.AddCert(c)
	return &testCA{cert: c, key: k, pool: p}
}

func (ca *testCA) issue(t *testing.T, cn string, server bool) tls.Certificate {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &k.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}

// TestBrokerTLS: with a TLS listener, a device connects with its client
// certificate and its username must be the certificate's CN; a device
// naming itself as another, and any device on the plain listener, is
// refused.
func TestBrokerTLS(t *testing.T) {
	ca := newCA(t)
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srvTLS := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{ca.issue(t, "hub", true)},
		ClientCAs: ca.pool, ClientAuth: tls.RequireAndVerifyClientCert}
	s, err := Start(context.Background(), Config{Store: st, Verifier: verifier.Config{AllowTOFUUnsafe: true}, EmbeddedAddr: "127.0.0.1:0",
		EmbeddedTLSAddr: "127.0.0.1:0", EmbeddedTLS: srvTLS, StaleAfter: time.Hour, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	connect := func(url, user string, cert *tls.Certificate) error {
		o := paho.NewClientOptions().AddBroker(url).SetClientID(user).SetUsername(user).SetConnectTimeout(3 * time.Second)
		if cert != nil {
			o.SetTLSConfig(&tls.Config{RootCAs: ca.pool, Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12})
		}
		c := paho.NewClient(o)
		tok := c.Connect()
		tok.WaitTimeout(5 * time.Second)
		if tok.Error() == nil {
			c.Disconnect(10)
		}
		return tok.Error()
	}
	dev := ca.issue(t, "edge-7", false)
	if s.BrokerURL()[:6] != "ssl://" {
		t.Fatalf("devices are pointed at %s", s.BrokerURL())
	}
	cases := []struct {
		name, url, user string
		cert            *tls.Certificate
		ok              bool
	}{
		{"own certificate", s.BrokerURL(), "edge-7", &dev, true},
		{"another device's name", s.BrokerURL(), "edge-8", &dev, false},
		{"plain listener", s.brokerURL, "edge-7", nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := connect(tc.url, tc.user, tc.cert)
			if (err == nil) != tc.ok {
				t.Fatalf("connect: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
