package tpm

import (
	"errors"
	"testing"

	"github.com/ratatouille/rat/evidence/credential"
	"github.com/ratatouille/rat/evidence/failure"
)

// Credential activation against a real swtpm: the genuine pair activates;
// a challenge for another AK, a wrong answer, and a replayed answer fail.
func TestActivateCredentialSwtpm(t *testing.T) {
	tp, err := Open(startSwtpm(t))
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	ek, err := tp.CreateEK()
	if err != nil {
		t.Fatal(err)
	}
	defer ek.Close()
	ak, err := tp.CreateAK()
	if err != nil {
		t.Fatal(err)
	}
	defer ak.Close()

	ch, err := credential.Make(ek.PublicArea, ak.PublicArea)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ek.ActivateCredential(ak, ch.IDObject, ch.EncSecret)
	if err != nil {
		t.Fatalf("genuine activation failed: %v", err)
	}
	if err := ch.Check(got); err != nil {
		t.Fatalf("genuine answer rejected: %v", err)
	}
	var fe *failure.Error
	if err := ch.Check(got); !errors.As(err, &fe) || fe.Event.ID != failure.CredentialActivation {
		t.Fatalf("replayed answer: %v, want %s", err, failure.CredentialActivation)
	}

	// A challenge naming another AK (one byte of its public point changed,
	// so its name differs): the TPM must refuse to activate it.
	other := append([]byte(nil), ak.PublicArea...)
	other[len(other)-1] ^= 1
	ch2, err := credential.Make(ek.PublicArea, other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ek.ActivateCredential(ak, ch2.IDObject, ch2.EncSecret); err == nil {
		t.Fatal("the TPM activated a credential made for another AK name")
	}

	ch3, _ := credential.Make(ek.PublicArea, ak.PublicArea)
	if err := ch3.Check(make([]byte, credential.SecretSize)); err == nil {
		t.Fatal("a wrong answer was accepted")
	}

	// The EK's public area is a decryption key: refused as an AK.
	if _, err := credential.Make(ek.PublicArea, ek.PublicArea); err == nil {
		t.Fatal("a non-signing key was accepted as AK")
	}
}
