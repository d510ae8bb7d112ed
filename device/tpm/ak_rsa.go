package tpm

import (
	"crypto/rsa"
	"fmt"
	"math/big"
)

// AKKind chooses the attestation key's algorithm.
type AKKind int

const (
	// AKECCP256 is the default AK: ECDSA P-256 with SHA-256 (CreateAK).
	AKECCP256 AKKind = iota
	// AKRSA2048 is an RSA-2048 AK signing RSASSA-PKCS1-v1_5 with SHA-256,
	// for verifiers and TPMs that lack ECC (some older discrete TPMs, and
	// tooling that only handles RSA AKs).
	AKRSA2048
)

func (k AKKind) String() string {
	switch k {
	case AKECCP256:
		return "ecc-p256"
	case AKRSA2048:
		return "rsa-2048"
	}
	return fmt.Sprintf("AKKind(%d)", int(k))
}

// akRSATemplate is a restricted RSASSA-SHA256 signing key, the RSA form
// of TCG's AK profile. Restricted: the TPM signs only digests it computed
// itself (quotes, certifications), never an external digest that starts
// with TPM_GENERATED, which is what makes the magic check meaningful.
// The scheme is fixed in the key so a quote cannot ask for another one.
// As for akTemplate, the bytes must never change.
func akRSATemplate() []byte {
	o := &out{}
	o.u16(algRSA)
	o.u16(algSHA256)
	o.u32(akAttrs)
	o.tpm2b(nil)
	o.u16(algNull) // symmetric
	o.u16(algRSASSA)
	o.u16(algSHA256)
	o.u16(2048)
	o.u32(0)     // exponent: the default
	o.tpm2b(nil) // unique
	return o.b
}

// CreateAKWith creates an AK of the given kind, like CreateAK: a primary
// key of the endorsement hierarchy, so the same key comes back after a
// restart and quotes carry unobfuscated resetCount/restartCount.
// CreateAKWith(AKECCP256) is CreateAK().
func (t *TPM) CreateAKWith(kind AKKind) (*AK, error) {
	switch kind {
	case AKECCP256:
		return t.CreateAK()
	case AKRSA2048:
	default:
		return nil, fmt.Errorf("tpm: create AK: unknown kind %v", kind)
	}
	h, area, name, pub, err := t.createKey("RSA AK", akRSATemplate())
	if err != nil {
		return nil, err
	}
	ak := &AK{tpm: t, handle: h, name: name}
	if pub.typ != algRSA {
		_ = ak.Close()
		return nil, fmt.Errorf("tpm: RSA AK public area: type 0x%04x", pub.typ)
	}
	// Exponent 0 means the default, 65537 (TPM 2.0 Part 2, TPMS_RSA_PARMS).
	e := int(pub.rsaExponent)
	if e == 0 {
		e = 65537
	}
	// The TPM must have made the key that was asked for: a verifier reads
	// the scheme from the signature, and a weaker key would pass it.
	if pub.rsaBits != 2048 || len(pub.rsaModulus) != 256 {
		_ = ak.Close()
		return nil, fmt.Errorf("tpm: RSA AK has %d bits (modulus %d bytes), want 2048", pub.rsaBits, len(pub.rsaModulus))
	}
	ak.Public = &rsa.PublicKey{N: new(big.Int).SetBytes(pub.rsaModulus), E: e}
	ak.PublicArea = area
	return ak, nil
}
