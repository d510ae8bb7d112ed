package bundle

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/veraison/go-cose"
)

// BindingMethod names how the hub bound the AK to the EK.
const BindingMethod = "tpm2-credential-activation"

// Binding is the enrolling hub's statement that the TPM holding EK
// EKPublic also holds AK AKPublic, because it answered a credential
// activation challenge for the AK's name under the EK at Time. An auditor
// cannot repeat the activation offline (it needs the TPM), so this is the
// one link of the chain that is trusted, not proven, and the report says so.
type Binding struct {
	AKPublic []byte `cbor:"1,keyasint"` // TPMT_PUBLIC
	EKPublic []byte `cbor:"2,keyasint"` // TPMT_PUBLIC
	Method   string `cbor:"3,keyasint"`
	Time     int64  `cbor:"4,keyasint"` // Unix seconds, no tag (RFC 8392 NumericDate)
	Hub      string `cbor:"5,keyasint,omitempty"`
	Device   string `cbor:"6,keyasint,omitempty"`
}

// SignBinding encodes b and signs it as a COSE_Sign1 whose protected
// header names MediaBinding as the content type.
func SignBinding(s cose.Signer, b *Binding) ([]byte, error) {
	if len(b.AKPublic) == 0 || len(b.EKPublic) == 0 || b.Method == "" {
		return nil, errors.New("bundle: binding needs AK, EK and method")
	}
	payload, err := encMode.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("bundle: encode binding: %w", err)
	}
	return sign(s, MediaBinding, payload)
}

// VerifyBinding checks msg with the hub's public key and returns the
// statement. It refuses any signature whose content type is not a binding.
func VerifyBinding(msg []byte, pub crypto.PublicKey) (*Binding, error) {
	payload, err := verifySign1(msg, pub, MediaBinding)
	if err != nil {
		return nil, fmt.Errorf("bundle: binding: %w", err)
	}
	var b Binding
	if err := decMode.Unmarshal(payload, &b); err != nil {
		return nil, fmt.Errorf("bundle: binding: %w", err)
	}
	return &b, nil
}

// VerifyEnd checks the end element's signature with the hub's key.
// Without a signature it returns an error; callers treat that as
// "not signed", never as a failed bundle.
func VerifyEnd(e *End, pub crypto.PublicKey) error {
	if e == nil || len(e.Signature) == 0 {
		return errors.New("bundle: not signed")
	}
	payload, err := verifySign1(e.Signature, pub, MediaSummary)
	if err != nil {
		return fmt.Errorf("bundle: end signature: %w", err)
	}
	if !bytes.Equal(payload, e.SummaryBytes) {
		return errors.New("bundle: end signature signs another summary")
	}
	return nil
}

// ParseHubKey reads a hub public key from SPKI DER.
func ParseHubKey(der []byte) (crypto.PublicKey, error) {
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("bundle: hub key: %w", err)
	}
	return k, nil
}

// algFor picks the one COSE algorithm a key may be used with, so a
// message cannot choose a weaker one.
func algFor(pub crypto.PublicKey) (cose.Algorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return cose.AlgorithmES256, nil
		case elliptic.P384():
			return cose.AlgorithmES384, nil
		case elliptic.P521():
			return cose.AlgorithmES512, nil
		}
	case ed25519.PublicKey:
		return cose.AlgorithmEdDSA, nil
	case *rsa.PublicKey:
		return cose.AlgorithmPS256, nil
	}
	return 0, fmt.Errorf("unsupported key type %T", pub)
}

func verifySign1(msg []byte, pub crypto.PublicKey, contentType string) ([]byte, error) {
	alg, err := algFor(pub)
	if err != nil {
		return nil, err
	}
	v, err := cose.NewVerifier(alg, pub)
	if err != nil {
		return nil, err
	}
	var m cose.Sign1Message
	if err := m.UnmarshalCBOR(msg); err != nil {
		return nil, fmt.Errorf("COSE_Sign1: %w", err)
	}
	if err := m.Verify(nil, v); err != nil {
		return nil, fmt.Errorf("COSE_Sign1: %w", err)
	}
	// Only after the signature verifies is the header believed.
	ct, ok := m.Headers.Protected[cose.HeaderLabelContentType].(string)
	if !ok || ct != contentType {
		return nil, fmt.Errorf("COSE_Sign1 content type %v, want %q", m.Headers.Protected[cose.HeaderLabelContentType], contentType)
	}
	return m.Payload, nil
}
