package credential

import (
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

func akTemplate(mod func(*tpm2.TPMAObject)) []byte {
	t := tpm2.TPMTPublic{
		Type: tpm2.TPMAlgECC, NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true, UserWithAuth: true, Restricted: true, SignEncrypt: true},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Scheme:  tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgECDSA, Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256})},
			CurveID: tpm2.TPMECCNistP256,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{X: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)}, Y: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)}}),
	}
	if mod != nil {
		mod(&t.ObjectAttributes)
	}
	return tpm2.Marshal(t)
}

// The AK attribute checks refuse keys whose signatures prove nothing.
// (The full MakeCredential/ActivateCredential round trip runs against a
// real swtpm in device/tpm.)
func TestCheckAKAttributes(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*tpm2.TPMAObject)
		ok   bool
	}{
		{"restricted signing AK", nil, true},
		{"not restricted", func(a *tpm2.TPMAObject) { a.Restricted = false }, false},
		{"also decrypts", func(a *tpm2.TPMAObject) { a.Decrypt = true }, false},
		{"not fixedTPM", func(a *tpm2.TPMAObject) { a.FixedTPM = false }, false},
		{"imported", func(a *tpm2.TPMAObject) { a.SensitiveDataOrigin = false }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ek := tpm2.Marshal(tpm2.RSAEKTemplate)
			_, err := Make(ek, akTemplate(tc.mod))
			if tc.ok {
				// The EK template has an empty modulus: Make gets past the
				// AK checks and fails on the EK, which is what we look for.
				if err != nil && strings.HasPrefix(err.Error(), "credential: AK") {
					t.Fatalf("good AK refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("bad AK accepted")
			}
		})
	}
}

func FuzzMake(f *testing.F) {
	f.Add(tpm2.Marshal(tpm2.RSAEKTemplate), akTemplate(nil))
	f.Add(tpm2.Marshal(tpm2.ECCEKTemplate), akTemplate(nil))
	f.Fuzz(func(t *testing.T, ek, ak []byte) {
		_, _ = Make(ek, ak)
	})
}
