package tpm

import (
	"crypto/rand"
	"errors"
	"fmt"
)

// ekPolicy is the EK's authPolicy: PolicySecret(TPM_RH_ENDORSEMENT), the
// TCG EK Credential Profile's default (B.3.3).
var ekPolicy = []byte{
	0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,
	0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
}

// ekTemplate is the TCG default RSA-2048 EK template (EK Credential
// Profile 2.x, template L-1), the one EK certificates at NV 0x01c00002
// certify: a restricted decryption key with AES-128-CFB, exponent 65537
// (0) and a 256-byte zero unique field.
func ekTemplate() []byte {
	o := &out{}
	o.u16(algRSA)
	o.u16(algSHA256)
	o.u32(attrFixedTPM | attrFixedParent | attrSensitiveDataOrigin | attrAdminWithPolicy | attrRestricted | attrDecrypt)
	o.tpm2b(ekPolicy)
	o.u16(algAES)
	o.u16(128)
	o.u16(algCFB)
	o.u16(algNull) // scheme
	o.u16(2048)
	o.u32(0)
	o.tpm2b(make([]byte, 256))
	return o.b
}

// EK is the loaded endorsement key (TCG default RSA-2048 template, the one
// EK certificates at NV 0x01c00002 certify).
type EK struct {
	tpm    *TPM
	handle uint32
	name   []byte
	// PublicArea is the EK's TPMT_PUBLIC bytes.
	PublicArea []byte
}

// CreateEK re-derives the EK from the endorsement seed.
func (t *TPM) CreateEK() (*EK, error) {
	h, area, name, pub, err := t.createKey("EK", ekTemplate())
	if err != nil {
		return nil, err
	}
	if pub.typ != algRSA || pub.rsaBits != 2048 {
		_ = t.flush(h)
		return nil, errors.New("tpm: EK public area: not an RSA-2048 key")
	}
	return &EK{tpm: t, handle: h, name: name, PublicArea: area}, nil
}

// Close flushes the EK.
func (ek *EK) Close() error { return ek.tpm.flush(ek.handle) }

// ActivateCredential answers the verifier's challenge: the TPM decrypts
// the secret only if it holds this EK and an object named as the
// challenge says (the AK). The EK's policy is PolicySecret(endorsement).
func (ek *EK) ActivateCredential(ak *AK, idObject, encSecret []byte) ([]byte, error) {
	t := ek.tpm
	sess, err := t.startPolicySession()
	if err != nil {
		return nil, fmt.Errorf("tpm: policy session: %w", err)
	}
	defer func() { _ = t.flush(sess) }()
	p := &out{}
	p.tpm2b(nil) // nonceTPM: no freshness asked
	p.tpm2b(nil) // cpHashA
	p.tpm2b(nil) // policyRef
	p.u32(0)     // expiration
	if _, _, err := t.run(ccPolicySecret, []uint32{rhEndorsement, sess}, []session{password}, p, 0); err != nil {
		return nil, fmt.Errorf("tpm: PolicySecret(endorsement): %w", err)
	}
	policy, err := policyAuth(sess)
	if err != nil {
		return nil, fmt.Errorf("tpm: ActivateCredential: %w", err)
	}
	p = &out{}
	p.tpm2b(idObject)
	p.tpm2b(encSecret)
	_, r, err := t.run(ccActivateCredential, []uint32{ak.handle, ek.handle}, []session{password, policy}, p, 0)
	if err != nil {
		return nil, fmt.Errorf("tpm: ActivateCredential: %w", err)
	}
	certInfo := r.tpm2b()
	if err := r.done(); err != nil {
		return nil, fmt.Errorf("tpm: ActivateCredential response: %w", err)
	}
	return certInfo, nil
}

// startPolicySession starts an unbound, unsalted SHA-256 policy session.
func (t *TPM) startPolicySession() (uint32, error) {
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return 0, err
	}
	p := &out{}
	p.tpm2b(nonce)
	p.tpm2b(nil) // encryptedSalt
	p.u8(sePolicy)
	p.u16(algNull) // symmetric
	p.u16(algSHA256)
	hs, r, err := t.run(ccStartAuthSession, []uint32{rhNull, rhNull}, nil, p, 1)
	if err != nil {
		return 0, err
	}
	r.tpm2b() // nonceTPM
	if err := r.done(); err != nil {
		_ = t.flush(hs[0])
		return 0, fmt.Errorf("StartAuthSession response: %w", err)
	}
	return hs[0], nil
}
