package tpm

import (
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// EK is the loaded endorsement key (TCG default RSA-2048 template, the one
// EK certificates at NV 0x01c00002 certify).
type EK struct {
	tpm    *TPM
	handle tpm2.TPMHandle
	name   tpm2.TPM2BName
	// PublicArea is the EK's TPMT_PUBLIC bytes.
	PublicArea []byte
}

// CreateEK re-derives the EK from the endorsement seed.
func (t *TPM) CreateEK() (*EK, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHEndorsement,
		InPublic:      tpm2.New2B(tpm2.RSAEKTemplate),
	}.Execute(t.t)
	if err != nil {
		return nil, fmt.Errorf("tpm: create EK: %w", err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("tpm: EK public area: %w", err)
	}
	return &EK{tpm: t, handle: rsp.ObjectHandle, name: rsp.Name, PublicArea: tpm2.Marshal(pub)}, nil
}

// Close flushes the EK.
func (ek *EK) Close() error {
	_, err := tpm2.FlushContext{FlushHandle: ek.handle}.Execute(ek.tpm.t)
	return err
}

// ActivateCredential answers the verifier's challenge: the TPM decrypts
// the secret only if it holds this EK and an object named as the
// challenge says (the AK). The EK's policy is PolicySecret(endorsement).
func (ek *EK) ActivateCredential(ak *AK, idObject, encSecret []byte) ([]byte, error) {
	sess, closeSess, err := tpm2.PolicySession(ek.tpm.t, tpm2.TPMAlgSHA256, 16)
	if err != nil {
		return nil, fmt.Errorf("tpm: policy session: %w", err)
	}
	defer func() { _ = closeSess() }()
	if _, err := (tpm2.PolicySecret{
		AuthHandle:    tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)},
		PolicySession: sess.Handle(),
	}).Execute(ek.tpm.t); err != nil {
		return nil, fmt.Errorf("tpm: PolicySecret(endorsement): %w", err)
	}
	rsp, err := tpm2.ActivateCredential{
		ActivateHandle: tpm2.AuthHandle{Handle: ak.handle, Name: ak.name, Auth: tpm2.PasswordAuth(nil)},
		KeyHandle:      tpm2.AuthHandle{Handle: ek.handle, Name: ek.name, Auth: sess},
		CredentialBlob: tpm2.TPM2BIDObject{Buffer: idObject},
		Secret:         tpm2.TPM2BEncryptedSecret{Buffer: encSecret},
	}.Execute(ek.tpm.t)
	if err != nil {
		return nil, fmt.Errorf("tpm: ActivateCredential: %w", err)
	}
	return rsp.CertInfo.Buffer, nil
}
