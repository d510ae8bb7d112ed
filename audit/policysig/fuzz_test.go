package policysig_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ratatouille/rat/audit/policysig"
)

func addConformanceSeeds(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join(confDir, "*", "bundle.sigstore.json"))
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`))
}

// FuzzParseBundle: the bundle parser is the first thing a webhook payload
// reaches. It must never panic, and whatever it accepts must be a
// message-signature bundle with verification material.
func FuzzParseBundle(f *testing.F) {
	addConformanceSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		bd, err := policysig.ParseBundle(b)
		if err != nil {
			if bd != nil {
				t.Fatal("bundle returned with error")
			}
			if !errors.Is(err, policysig.ErrMalformedBundle) && !errors.Is(err, policysig.ErrNotMessageSignature) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		if bd.GetMessageSignature() == nil || bd.GetDsseEnvelope() != nil || bd.GetVerificationMaterial() == nil {
			t.Fatalf("accepted a bundle that is not a message signature: %s", b)
		}
	})
}

// FuzzVerify: Verify with a fixed key must never accept a bundle whose
// signature is not the one the key really made, and must classify every
// refusal.
func FuzzVerify(f *testing.F) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	good, err := policysig.SignWithKey(context.Background(), policyJSON, k)
	if err != nil {
		f.Fatal(err)
	}
	var gb struct {
		MessageSignature struct {
			Signature []byte `json:"signature"`
		} `json:"messageSignature"`
	}
	if err := json.Unmarshal(good, &gb); err != nil || len(gb.MessageSignature.Signature) == 0 {
		f.Fatalf("signed bundle has no signature: %v", err)
	}
	v, err := policysig.New(nil, policysig.WithPublicKey(k.Public()), policysig.WithoutTlogUnsafe())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	addConformanceSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := v.Verify(policyJSON, b)
		if err != nil {
			for _, e := range []error{policysig.ErrMalformedBundle, policysig.ErrNotMessageSignature, policysig.ErrUntrustedSigner, policysig.ErrVerification} {
				if errors.Is(err, e) {
					return
				}
			}
			t.Fatalf("unclassified error: %v", err)
		}
		bd, perr := policysig.ParseBundle(b)
		if perr != nil {
			t.Fatalf("Verify accepted what ParseBundle refuses: %v", perr)
		}
		if !bytes.Equal(bd.GetMessageSignature().GetSignature(), gb.MessageSignature.Signature) || !res.KeySigned {
			t.Fatalf("accepted a signature the key did not make: %s", b)
		}
	})
}
