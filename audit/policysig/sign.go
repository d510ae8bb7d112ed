package policysig

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"time"

	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"google.golang.org/protobuf/encoding/protojson"
)

// SignOption configures SignWithKey.
type SignOption func(*signConfig) error

type signConfig struct {
	rekorURL string
	timeout  time.Duration
}

// WithRekorUpload uploads the signature to the Rekor v1 instance at url
// and puts the log entry in the bundle. Without it the bundle has no
// transparency-log entry (like cosign --tlog-upload=false) and verifies
// only for groups configured key-only without tlog.
func WithRekorUpload(url string, timeout time.Duration) SignOption {
	return func(c *signConfig) error {
		if url == "" {
			return fmt.Errorf("%w: empty Rekor URL", ErrConfig)
		}
		c.rekorURL, c.timeout = url, timeout
		return nil
	}
}

// SignWithKey signs policy with a long-lived key and returns a v0.3
// Sigstore bundle (JSON) holding a message signature, as
// `cosign sign-blob --key K --new-bundle-format --bundle B` writes it.
// `cosign verify-blob --key K.pub --bundle B` accepts it.
func SignWithKey(ctx context.Context, policy []byte, signer crypto.Signer, opts ...SignOption) ([]byte, error) {
	var c signConfig
	for _, o := range opts {
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	kp, err := newKeypair(signer)
	if err != nil {
		return nil, err
	}
	bo := sign.BundleOptions{Context: ctx}
	if c.rekorURL != "" {
		bo.TransparencyLogs = append(bo.TransparencyLogs, sign.NewRekor(&sign.RekorOptions{BaseURL: c.rekorURL, Timeout: c.timeout, Version: 1}))
	}
	pb, err := sign.Bundle(&sign.PlainData{Data: policy}, kp, bo)
	if err != nil {
		return nil, fmt.Errorf("policysig: sign: %w", err)
	}
	out, err := protojson.Marshal(pb)
	if err != nil {
		return nil, fmt.Errorf("policysig: sign: marshal bundle: %w", err)
	}
	return out, nil
}

// keypair adapts a crypto.Signer to sigstore-go's sign.Keypair with the
// key's default algorithm (ECDSA P-256 → SHA-256, as cosign keys are).
type keypair struct {
	s    crypto.Signer
	alg  signature.AlgorithmDetails
	hint []byte
}

func newKeypair(s crypto.Signer) (*keypair, error) {
	alg, err := signature.GetDefaultAlgorithmDetails(s.Public())
	if err != nil {
		return nil, fmt.Errorf("policysig: signing key: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(s.Public())
	if err != nil {
		return nil, fmt.Errorf("policysig: signing key: %w", err)
	}
	sum := sha256.Sum256(der)
	return &keypair{s: s, alg: alg, hint: []byte(base64.StdEncoding.EncodeToString(sum[:]))}, nil
}

func (k *keypair) GetHashAlgorithm() protocommon.HashAlgorithm { return k.alg.GetProtoHashType() }
func (k *keypair) GetSigningAlgorithm() protocommon.PublicKeyDetails {
	return k.alg.GetSignatureAlgorithm()
}
func (k *keypair) GetHint() []byte                { return k.hint }
func (k *keypair) GetPublicKey() crypto.PublicKey { return k.s.Public() }
func (k *keypair) GetKeyAlgorithm() string {
	switch k.alg.GetKeyType() {
	case signature.ECDSA:
		return "ECDSA"
	case signature.RSA:
		return "RSA"
	case signature.ED25519:
		return "ED25519"
	}
	return ""
}

func (k *keypair) GetPublicKeyPem() (string, error) {
	b, err := cryptoutils.MarshalPublicKeyToPEM(k.s.Public())
	return string(b), err
}

func (k *keypair) SignData(_ context.Context, data []byte) ([]byte, []byte, error) {
	hf := k.alg.GetHashType()
	toSign := data
	if hf != crypto.Hash(0) {
		h := hf.New()
		h.Write(data)
		toSign = h.Sum(nil)
	}
	sig, err := k.s.Sign(rand.Reader, toSign, hf)
	if err != nil {
		return nil, nil, err
	}
	return sig, toSign, nil
}

// SignKeyless signs policy with an ephemeral key certified by the Fulcio
// at fulcioURL for the OIDC identity in idToken, and logs the signature
// in the Rekor v1 at rekorURL (keyless signing needs the log: the
// certificate lives ten minutes, the log's timestamp proves it was valid
// when the policy was signed). This is the network path; the hub never
// takes it.
func SignKeyless(ctx context.Context, policy []byte, idToken, fulcioURL, rekorURL string, timeout time.Duration) ([]byte, error) {
	if idToken == "" || fulcioURL == "" || rekorURL == "" {
		return nil, fmt.Errorf("%w: keyless signing needs an identity token, a Fulcio URL and a Rekor URL", ErrConfig)
	}
	kp, err := sign.NewEphemeralKeypair(nil)
	if err != nil {
		return nil, fmt.Errorf("policysig: sign: %w", err)
	}
	bo := sign.BundleOptions{
		Context:                    ctx,
		CertificateProvider:        sign.NewFulcio(&sign.FulcioOptions{BaseURL: fulcioURL, Timeout: timeout}),
		CertificateProviderOptions: &sign.CertificateProviderOptions{IDToken: idToken},
		TransparencyLogs:           []sign.Transparency{sign.NewRekor(&sign.RekorOptions{BaseURL: rekorURL, Timeout: timeout, Version: 1})},
	}
	pb, err := sign.Bundle(&sign.PlainData{Data: policy}, kp, bo)
	if err != nil {
		return nil, fmt.Errorf("policysig: sign: %w", err)
	}
	out, err := protojson.Marshal(pb)
	if err != nil {
		return nil, fmt.Errorf("policysig: sign: marshal bundle: %w", err)
	}
	return out, nil
}
