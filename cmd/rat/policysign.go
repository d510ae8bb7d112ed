package main

// rat policy sign / rat policy verify: the operator's side of signed
// runtime policies. verify runs exactly the check the hub runs
// (audit/policysig); sign writes bundles that `cosign verify-blob`
// accepts, for operators who have no cosign.

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/encrypted"
	"github.com/sigstore/sigstore-go/pkg/root"

	"github.com/ratatouille/rat/audit/policysig"
)

const policySignUsage = `usage:
  rat policy sign --policy P (--key cosign.key | --identity-token T --fulcio-url U --rekor-url R)
                  [--rekor-url R] [-o P.sigstore.json]
      --key: cosign's encrypted key (password in $COSIGN_PASSWORD) or a PKCS#8/EC PEM key.
      Without --rekor-url a key-signed bundle has no transparency-log entry (like cosign
      --tlog-upload=false) and verifies only for key-only groups.
  rat policy verify --bundle B --policy P --trusted-root T
                    (--identity I --issuer S | --identity-regexp RE --issuer-regexp RE | --key K.pub
                     | --signer-policy group.json) [--without-tlog-unsafe] [--json]
exit: 0 ok, 1 signature refused, 2 usage or unreadable input`

// policySign implements `rat policy sign`.
func policySign(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rat policy sign", flag.ContinueOnError)
	fs.SetOutput(stderr)
	polPath := fs.String("policy", "", "runtime policy file to sign")
	keyPath := fs.String("key", "", "signing key (cosign.key or PEM private key)")
	token := fs.String("identity-token", "", "OIDC identity token for keyless signing")
	fulcio := fs.String("fulcio-url", "", "Fulcio URL (keyless)")
	rekor := fs.String("rekor-url", "", "Rekor v1 URL to log the signature in")
	out := fs.String("o", "", "bundle output (default <policy>.sigstore.json, - for stdout)")
	timeout := fs.Duration("timeout", 30*time.Second, "network timeout (keyless, Rekor)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *polPath == "" || (*keyPath == "") == (*token == "") {
		fmt.Fprintf(stderr, "rat policy sign: need --policy and exactly one of --key, --identity-token\n%s\n", policySignUsage)
		return 2
	}
	pol, err := os.ReadFile(*polPath)
	if err != nil {
		fmt.Fprintf(stderr, "rat policy sign: %v\n", err)
		return 2
	}
	b, err := signPolicy(pol, *keyPath, *token, *fulcio, *rekor, *timeout)
	if err != nil {
		fmt.Fprintf(stderr, "rat policy sign: %v\n", err)
		return 2
	}
	if *keyPath != "" && *rekor == "" {
		fmt.Fprintln(stderr, "rat policy sign: note: no transparency-log entry; the bundle verifies only where the group is key-only without tlog")
	}
	dst := *out
	if dst == "" {
		dst = *polPath + ".sigstore.json"
	}
	if err := writeOut(dst, append(b, '\n'), stdout); err != nil {
		fmt.Fprintf(stderr, "rat policy sign: %v\n", err)
		return 2
	}
	return 0
}

// signPolicy is shared by `rat policy sign` and `rat init-baseline --sign`.
func signPolicy(pol []byte, keyPath, token, fulcio, rekor string, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout+5*time.Second)
	defer cancel()
	if token != "" {
		return policysig.SignKeyless(ctx, pol, token, fulcio, rekor, timeout)
	}
	signer, err := loadSigningKey(keyPath, os.Getenv("COSIGN_PASSWORD"))
	if err != nil {
		return nil, err
	}
	var opts []policysig.SignOption
	if rekor != "" {
		opts = append(opts, policysig.WithRekorUpload(rekor, timeout))
	}
	return policysig.SignWithKey(ctx, pol, signer, opts...)
}

func writeOut(dst string, b []byte, stdout io.Writer) error {
	if dst == "-" {
		_, err := stdout.Write(b)
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

// loadSigningKey reads cosign's encrypted private key ("ENCRYPTED
// SIGSTORE PRIVATE KEY", scrypt + secretbox, the password cosign reads
// from COSIGN_PASSWORD) or an unencrypted PKCS#8 / SEC 1 PEM key.
func loadSigningKey(path, password string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	der := blk.Bytes
	switch blk.Type {
	case "ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY":
		if der, err = encrypted.Decrypt(blk.Bytes, []byte(password)); err != nil {
			return nil, fmt.Errorf("%s: decrypt (password from COSIGN_PASSWORD): %w", path, err)
		}
	case "PRIVATE KEY", "EC PRIVATE KEY":
	default:
		return nil, fmt.Errorf("%s: unsupported PEM block %q", path, blk.Type)
	}
	var key any
	if blk.Type == "EC PRIVATE KEY" {
		key, err = x509.ParseECPrivateKey(der)
	} else {
		key, err = x509.ParsePKCS8PrivateKey(der)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: key of type %T cannot sign", path, key)
	}
	return s, nil
}

// policyVerify implements `rat policy verify`.
func policyVerify(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rat policy verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bundlePath := fs.String("bundle", "", "Sigstore bundle (.sigstore.json)")
	polPath := fs.String("policy", "", "runtime policy file")
	rootPath := fs.String("trusted-root", "", "trusted_root.json (public-good or private Sigstore)")
	identity := fs.String("identity", "", "allowed certificate SAN (exact)")
	identityRE := fs.String("identity-regexp", "", "allowed certificate SAN (anchored regexp)")
	issuer := fs.String("issuer", "", "allowed OIDC issuer (exact)")
	issuerRE := fs.String("issuer-regexp", "", "allowed OIDC issuer (anchored regexp)")
	keyPath := fs.String("key", "", "allowed public key (PEM, e.g. cosign.pub)")
	signerPolicy := fs.String("signer-policy", "", "a group's signer policy JSON, as the hub is configured")
	noTlog := fs.Bool("without-tlog-unsafe", false, "accept bundles without a transparency-log entry (key-only fleets without internet)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *bundlePath == "" || *polPath == "" {
		fmt.Fprintf(stderr, "rat policy verify: need --bundle and --policy\n%s\n", policySignUsage)
		return 2
	}
	var sp policysig.SignerPolicy
	modes := 0
	if *identity != "" || *identityRE != "" || *issuer != "" || *issuerRE != "" {
		modes++
		sp.Identities = []policysig.Identity{{Issuer: *issuer, IssuerRegex: *issuerRE, SAN: *identity, SANRegex: *identityRE}}
	}
	if *keyPath != "" {
		modes++
		k, err := os.ReadFile(*keyPath)
		if err != nil {
			fmt.Fprintf(stderr, "rat policy verify: %v\n", err)
			return 2
		}
		sp.PublicKeys = []string{string(k)}
	}
	if *signerPolicy != "" {
		modes++
		b, err := os.ReadFile(*signerPolicy)
		if err == nil {
			sp, err = policysig.ParseSignerPolicy(b)
		}
		if err != nil {
			fmt.Fprintf(stderr, "rat policy verify: %s: %v\n", *signerPolicy, err)
			return 2
		}
	}
	if modes != 1 {
		fmt.Fprintf(stderr, "rat policy verify: give exactly one signer: --identity/--issuer, --key or --signer-policy\n%s\n", policySignUsage)
		return 2
	}
	if *noTlog {
		sp.KeyOnlyWithoutTlogUnsafe = true
	}
	var tm root.TrustedMaterial
	if *rootPath != "" {
		b, err := os.ReadFile(*rootPath)
		if err != nil {
			fmt.Fprintf(stderr, "rat policy verify: %v\n", err)
			return 2
		}
		tr, err := policysig.ParseTrustedRoot(b)
		if err != nil {
			fmt.Fprintf(stderr, "rat policy verify: %s: %v\n", *rootPath, err)
			return 2
		}
		tm = tr
	}
	v, err := policysig.NewFromPolicy(tm, sp)
	if err != nil {
		fmt.Fprintf(stderr, "rat policy verify: %v\n", err)
		return 2
	}
	pol, err := os.ReadFile(*polPath)
	if err != nil {
		fmt.Fprintf(stderr, "rat policy verify: %v\n", err)
		return 2
	}
	bundleJSON, err := os.ReadFile(*bundlePath)
	if err != nil {
		fmt.Fprintf(stderr, "rat policy verify: %v\n", err)
		return 2
	}
	res, err := v.Verify(pol, bundleJSON)
	if err != nil {
		if errors.Is(err, policysig.ErrConfig) {
			fmt.Fprintf(stderr, "rat policy verify: %v\n", err)
			return 2
		}
		fmt.Fprintf(stderr, "rat policy verify: REFUSED %s: %v\n", *polPath, err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return 2
		}
		return 0
	}
	fmt.Fprintf(stdout, "ok: %s %s signed by %s", *polPath, res.Digest, res.Signer())
	if res.Issuer != "" {
		fmt.Fprintf(stdout, " (issuer %s)", res.Issuer)
	}
	if i, ok := res.LogIndex(); ok {
		fmt.Fprintf(stdout, ", rekor log %s index %d", res.Tlog[0].LogID, i)
	} else {
		fmt.Fprint(stdout, ", no transparency-log entry")
	}
	if !res.IntegratedTime.IsZero() {
		fmt.Fprintf(stdout, ", integrated %s", res.IntegratedTime.Format(time.RFC3339))
	}
	fmt.Fprintln(stdout)
	return 0
}
