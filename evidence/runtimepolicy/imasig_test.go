package runtimepolicy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"testing"

	"github.com/ratatouille/rat/evidence/failure"
	"github.com/ratatouille/rat/evidence/ima"
)

func imaSig(t *testing.T, k *ecdsa.PrivateKey, keyID uint32, digest []byte) []byte {
	t.Helper()
	s, err := ecdsa.SignASN1(rand.Reader, k, digest)
	if err != nil {
		t.Fatal(err)
	}
	out := []byte{imaXattrDigsig, imaSigV2, 4, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(out[3:7], keyID)
	binary.BigEndian.PutUint16(out[7:9], uint16(len(s)))
	return append(out, s...)
}

func TestEvaluateIMASig(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := FromEntries(nil, WithVerificationKeys(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
	if err != nil {
		t.Fatal(err)
	}
	_, id, err := keyFromPEM(der)
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("signed file"))
	good := imaSig(t, k, id, d[:])
	forged := imaSig(t, other, id, d[:])
	truncated := good[:len(good)-1]
	wrongDigest := sha256.Sum256([]byte("other file"))
	tests := []struct {
		name   string
		sig    []byte
		digest []byte
		want   string
	}{
		{name: "valid signature", sig: good, digest: d[:]},
		{name: "signature by other key", sig: forged, digest: d[:], want: failure.IMANotInAllowlist},
		{name: "truncated", sig: truncated, digest: d[:], want: failure.IMANotInAllowlist},
		{name: "digest mismatch", sig: good, digest: wrongDigest[:], want: failure.IMANotInAllowlist},
		{name: "no signature", digest: d[:], want: failure.IMANotInAllowlist},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := ima.Entry{TemplateName: "ima-sig", DigestAlg: "sha256", Digest: tc.digest, Path: "/usr/bin/signed", Signature: tc.sig}
			evs := Evaluate(pol, []ima.Entry{e})
			got := ""
			if len(evs) > 0 {
				got = evs[0].ID
			}
			if got != tc.want || len(evs) > 1 {
				t.Fatalf("events %v, want %q", evs, tc.want)
			}
		})
	}
}
