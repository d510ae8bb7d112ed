// Command secret-release is the relying party of issue 9: it releases a
// secret only to a device that presents a valid, affirming attestation-result
// token from the Ratatouille hub for itself.
//
//	secret-release -demo
//	    runs hub, service and a device on loopback and narrates the flow.
//	secret-release -listen :8443 -hub https://hub:8443 -issuer ratatouille-hub \
//	    -audience secret-release -tls-cert svc.pem -tls-key svc.key \
//	    -client-ca devices-ca.pem -secret-file secret.txt
//	    serves POST /v1/nonce and GET /v1/secret over mTLS; the device's
//	    identity is its client certificate's CommonName.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/ratatouille/rat/examples/secret-release/demo"
	"github.com/ratatouille/rat/examples/secret-release/release"
)

func main() {
	var (
		runDemo    = flag.Bool("demo", false, "run the narrated loopback demo and exit")
		listen     = flag.String("listen", ":8443", "listen address")
		hubURL     = flag.String("hub", "", "hub base URL (JWKS and token status)")
		issuer     = flag.String("issuer", "ratatouille-hub", "expected iss of tokens")
		audience   = flag.String("audience", "secret-release", "this service's audience")
		certFile   = flag.String("tls-cert", "", "server certificate (PEM)")
		keyFile    = flag.String("tls-key", "", "server key (PEM)")
		clientCA   = flag.String("client-ca", "", "CA of device client certificates (PEM)")
		secretFile = flag.String("secret-file", "", "file holding the secret to release")
	)
	flag.Parse()
	if *runDemo {
		dir, err := os.MkdirTemp("", "secret-release-demo-")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(dir)
		if err := demo.Run(os.Stdout, dir); err != nil {
			fmt.Fprintln(os.Stderr, "secret-release demo:", err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
		return
	}
	if *hubURL == "" || *certFile == "" || *keyFile == "" || *clientCA == "" || *secretFile == "" {
		fmt.Fprintln(os.Stderr, "secret-release: -hub, -tls-cert, -tls-key, -client-ca and -secret-file are required (or -demo)")
		os.Exit(2)
	}
	secret, err := os.ReadFile(*secretFile)
	if err != nil {
		log.Fatalf("secret-release: %v", err)
	}
	caPEM, err := os.ReadFile(*clientCA)
	if err != nil {
		log.Fatalf("secret-release: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		log.Fatalf("secret-release: no certificate in %s", *clientCA)
	}
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		log.Fatalf("secret-release: %v", err)
	}
	svc := &release.Server{
		Verifier: &release.Verifier{
			HubURL: *hubURL, Issuer: *issuer, Audience: *audience,
			Client: &http.Client{Timeout: 10 * time.Second}, Nonces: &release.Nonces{},
		},
		Secret: func(string) []byte { return secret },
	}
	srv := &http.Server{
		Addr:              *listen,
		Handler:           svc.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    pool,
			MinVersion:   tls.VersionTLS13,
		},
	}
	log.Printf("secret-release: listening on %s, hub %s", *listen, *hubURL)
	log.Fatal(srv.ListenAndServeTLS("", ""))
}
