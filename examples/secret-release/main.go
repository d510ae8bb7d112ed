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
//	secret-release -device-header-unsafe -listen 127.0.0.1:0 -addr-file svc.addr \
//	    -hub http://127.0.0.1:8080 -secret-file secret.txt [-accept-unverified-platform-unsafe]
//	    demo only (make demo): plain HTTP on loopback, the caller names its
//	    device in the X-Rat-Device-Unsafe header instead of proving it.
//	secret-release -client -service URL -hub URL -device edge-1 \
//	    -hub-credential-file operator.token [-token-out F | -token-in F]
//	    demo client for that mode: nonce from the service, token from the
//	    hub's POST /v1/tokens, present it; exit 0 released, 3 refused, 1 error.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
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
		acceptPlat = flag.Bool("accept-unverified-platform-unsafe", false, "also accept \"warning\" results whose only shortfall is no EK certificate chain (TOFU) and no verified boot event log, as for a simulated TPM (make demo)")
		headerMode = flag.Bool("device-header-unsafe", false, "DEMO ONLY: plain HTTP on a loopback address, caller's device id from the "+release.DeviceHeaderUnsafe+" header (no proof)")
		addrFile   = flag.String("addr-file", "", "write the service's base URL to this file once listening")
		client     = flag.Bool("client", false, "run the demo client against a -device-header-unsafe service and exit")
		service    = flag.String("service", "", "-client: service base URL")
		device     = flag.String("device", "", "-client: the device to act as")
		credFile   = flag.String("hub-credential-file", "", "-client: bearer credential for the hub's POST /v1/tokens (operator token or relying-party credential)")
		tokenOut   = flag.String("token-out", "", "-client: get a nonce and a token, save the token to this file, do not present it")
		tokenIn    = flag.String("token-in", "", "-client: present the token saved in this file")
	)
	flag.Parse()
	if *client {
		os.Exit(runClient(os.Stdout, clientConfig{Service: *service, Hub: *hubURL, Device: *device, Audience: *audience,
			CredentialFile: *credFile, TokenOut: *tokenOut, TokenIn: *tokenIn}))
	}
	if *headerMode {
		if err := serveHeaderModeUnsafe(*listen, *addrFile, *hubURL, *issuer, *audience, *secretFile, *acceptPlat); err != nil {
			log.Fatalf("secret-release: %v", err)
		}
		return
	}
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
			AcceptUnverifiedPlatformUnsafe: *acceptPlat,
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

// serveHeaderModeUnsafe serves the service over plain HTTP with
// release.HeaderIdentityUnsafe. It refuses any listen address but loopback,
// so the unsafe identity never leaves the machine.
func serveHeaderModeUnsafe(listen, addrFile, hubURL, issuer, audience, secretFile string, acceptPlatform bool) error {
	if hubURL == "" || secretFile == "" {
		return errors.New("-device-header-unsafe needs -hub and -secret-file")
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("-listen %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("-device-header-unsafe listens on loopback only, not %q", listen)
	}
	secret, err := os.ReadFile(secretFile)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	svc := &release.Server{
		Verifier: &release.Verifier{
			HubURL: hubURL, Issuer: issuer, Audience: audience,
			Client: &http.Client{Timeout: 10 * time.Second}, Nonces: &release.Nonces{},
			AcceptUnverifiedPlatformUnsafe: acceptPlatform,
		},
		Secret:   func(string) []byte { return secret },
		Identify: release.HeaderIdentityUnsafe,
	}
	base := "http://" + ln.Addr().String()
	if addrFile != "" {
		if err := os.WriteFile(addrFile+".tmp", []byte(base+"\n"), 0o644); err != nil {
			return err
		}
		if err := os.Rename(addrFile+".tmp", addrFile); err != nil {
			return err
		}
	}
	log.Printf("secret-release: DEMO MODE (device identity from the %s header, no proof) on %s, hub %s", release.DeviceHeaderUnsafe, base, hubURL)
	srv := &http.Server{Handler: svc.Handler(), ReadHeaderTimeout: 5 * time.Second}
	return srv.Serve(ln)
}
