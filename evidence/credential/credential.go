package credential

import (
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"io"

	"github.com/google/go-tpm/tpm2"

	"github.com/ratatouille/rat/evidence/failure"
)

// SecretSize is the size of the challenge secret.
const SecretSize = 32

// Challenge is what the verifier sends to the device, and what it keeps.
type Challenge struct {
	// IDObject and EncSecret go to the device (TPM2_ActivateCredential's
	// credentialBlob and secret).
	IDObject, EncSecret []byte
	// secret stays with the verifier.
	secret []byte
}

// CheckAKAttributes refuses an AK the TPM would let anyone use to sign
// arbitrary data: it must be a restricted signing key that never left the
// TPM (fixedTPM, fixedParent, sensitiveDataOrigin), or a quote "signed by
// the AK" would prove nothing.
func CheckAKAttributes(ak *tpm2.TPMTPublic) error {
	a := ak.ObjectAttributes
	switch {
	case !a.Restricted:
		return fmt.Errorf("credential: AK is not restricted")
	case !a.SignEncrypt || a.Decrypt:
		return fmt.Errorf("credential: AK is not a signing-only key")
	case !a.FixedTPM || !a.FixedParent:
		return fmt.Errorf("credential: AK is not fixedTPM/fixedParent")
	case !a.SensitiveDataOrigin:
		return fmt.Errorf("credential: AK was not generated inside the TPM")
	}
	return nil
}

// Make builds a challenge for the AK (its TPMT_PUBLIC bytes) under the EK
// (its TPMT_PUBLIC bytes), after checking the AK's attributes.
func Make(ekPublic, akPublic []byte) (*Challenge, error) {
	return makeWith(rand.Reader, ekPublic, akPublic)
}

func makeWith(r io.Reader, ekPublic, akPublic []byte) (*Challenge, error) {
	ek, err := tpm2.Unmarshal[tpm2.TPMTPublic](ekPublic)
	if err != nil {
		return nil, fmt.Errorf("credential: EK public area: %w", err)
	}
	ak, err := tpm2.Unmarshal[tpm2.TPMTPublic](akPublic)
	if err != nil {
		return nil, fmt.Errorf("credential: AK public area: %w", err)
	}
	if err := CheckAKAttributes(ak); err != nil {
		return nil, err
	}
	name, err := tpm2.ObjectName(ak)
	if err != nil {
		return nil, fmt.Errorf("credential: AK name: %w", err)
	}
	key, err := tpm2.ImportEncapsulationKey(ek)
	if err != nil {
		return nil, fmt.Errorf("credential: EK as an encapsulation key: %w", err)
	}
	secret := make([]byte, SecretSize)
	if _, err := io.ReadFull(r, secret); err != nil {
		return nil, fmt.Errorf("credential: secret: %w", err)
	}
	id, enc, err := tpm2.CreateCredential(r, key, name.Buffer, secret)
	if err != nil {
		return nil, fmt.Errorf("credential: MakeCredential: %w", err)
	}
	return &Challenge{IDObject: id, EncSecret: enc, secret: secret}, nil
}

// Check compares the device's answer with the secret, in constant time.
func (c *Challenge) Check(answer []byte) error {
	if len(c.secret) == 0 {
		return failure.New(failure.CredentialActivation, "challenge already used or never made")
	}
	ok := subtle.ConstantTimeCompare(answer, c.secret) == 1
	// A challenge answers once: a replayed answer must not be accepted twice.
	c.secret = nil
	if !ok {
		return failure.New(failure.CredentialActivation, "activated secret does not match: the AK is not in the TPM of this EK")
	}
	return nil
}
