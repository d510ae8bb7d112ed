package credential

import (
	"crypto"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// PublicKey decodes a TPMT_PUBLIC (an EK's or AK's public area, as the
// device sends it) into a crypto public key. The verifier keeps the public
// area, not just the key, because the AK's name — what credential
// activation binds — is computed over the whole area, attributes included.
func PublicKey(publicArea []byte) (crypto.PublicKey, error) {
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](publicArea)
	if err != nil {
		return nil, fmt.Errorf("credential: public area: %w", err)
	}
	k, err := tpm2.Pub(*pub)
	if err != nil {
		return nil, fmt.Errorf("credential: public area key: %w", err)
	}
	return k, nil
}

// CheckAKPublic decodes an AK public area and checks it has the attributes
// of an attestation key (see CheckAKAttributes).
func CheckAKPublic(publicArea []byte) error {
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](publicArea)
	if err != nil {
		return fmt.Errorf("credential: AK public area: %w", err)
	}
	return CheckAKAttributes(pub)
}
