package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// policyKeygen makes an ECDSA P-256 policy signing key for fleets that sign
// without cosign: the private key as unencrypted PKCS#8 PEM (mode 0600) and
// the public key next to it (<out without .pem>.pub.pem), which is what the
// hub's --signers public_keys and `cosign verify-blob --key` take. Keep the
// private key offline; cosign generate-key-pair makes an encrypted one.
func policyKeygen(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rat policy keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "policy-key.pem", "private key output")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		fmt.Fprintln(stderr, "rat policy keygen:", err)
		return 2
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	pub, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	pubPath := strings.TrimSuffix(*out, ".pem") + ".pub.pem"
	if err := os.WriteFile(*out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		fmt.Fprintln(stderr, "rat policy keygen:", err)
		return 2
	}
	if err := os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
		fmt.Fprintln(stderr, "rat policy keygen:", err)
		return 2
	}
	fmt.Fprintf(stdout, "private key %s, public key %s\n", *out, pubPath)
	return 0
}
