package tpm

import (
	"crypto/rsa"
	"fmt"
	"math/big"

	"github.com/google/go-tpm/tpm2"
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
var akRSATemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgRSA,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true,
		UserWithAuth: true, Restricted: true, SignEncrypt: true, NoDA: true,
	},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
		Scheme: tpm2.TPMTRSAScheme{
			Scheme:  tpm2.TPMAlgRSASSA,
			Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256}),
		},
		KeyBits: 2048,
	}),
	Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{}),
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
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHEndorsement,
		InPublic:      tpm2.New2B(akRSATemplate),
	}.Execute(t.t)
	if err != nil {
		return nil, fmt.Errorf("tpm: create RSA AK: %w", err)
	}
	ak := &AK{tpm: t, handle: rsp.ObjectHandle, name: rsp.Name}
	fail := func(err error) (*AK, error) {
		_ = ak.Close()
		return nil, err
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		return fail(fmt.Errorf("tpm: RSA AK public area: %w", err))
	}
	parms, err := pub.Parameters.RSADetail()
	if err != nil {
		return fail(fmt.Errorf("tpm: RSA AK parameters: %w", err))
	}
	n, err := pub.Unique.RSA()
	if err != nil {
		return fail(fmt.Errorf("tpm: RSA AK modulus: %w", err))
	}
	// Exponent 0 means the default, 65537 (TPM 2.0 Part 2, TPMS_RSA_PARMS).
	e := int(parms.Exponent)
	if e == 0 {
		e = 65537
	}
	// The TPM must have made the key that was asked for: a verifier reads
	// the scheme from the signature, and a weaker key would pass it.
	if parms.KeyBits != 2048 || len(n.Buffer) != 256 {
		return fail(fmt.Errorf("tpm: RSA AK has %d bits (modulus %d bytes), want 2048", parms.KeyBits, len(n.Buffer)))
	}
	ak.Public = &rsa.PublicKey{N: new(big.Int).SetBytes(n.Buffer), E: e}
	ak.PublicArea = tpm2.Marshal(pub)
	return ak, nil
}
