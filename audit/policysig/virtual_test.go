package policysig_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"

	"github.com/ratatouille/rat/audit/policysig"
	"github.com/ratatouille/rat/audit/policysig/policysigtest"
)

const (
	alice  = "alice@example.com"
	issuer = "https://issuer.example.com"
)

var policyJSON = []byte(`{"meta":{"version":1},"release":0,"digests":{"/usr/bin/true":["` + strings.Repeat("ab", 32) + `"]},"excludes":[],"keyrings":{},"ima":{"ignored_keyrings":[],"log_hash_alg":"sha256","dm_policy":null},"ima-buf":{},"verification-keys":""}`)

// noTSA hides the virtual TSA, as a trusted root without timestamp
// authorities would.
type noTSA struct{ root.TrustedMaterial }

func (noTSA) TimestampingAuthorities() []root.TimestampingAuthority { return nil }

func virtualBundle(t testing.TB, vs *policysigtest.Sigstore, e *ca.TestEntity, parts policysigtest.Parts) []byte {
	t.Helper()
	b, err := vs.BundleJSON(e, parts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newVirtual(t testing.TB) *policysigtest.Sigstore {
	t.Helper()
	vs, err := policysigtest.New()
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

func TestKeylessVirtualSigstore(t *testing.T) {
	vs := newVirtual(t)
	tm := vs.TrustedMaterial()
	ent, err := vs.Sign(alice, issuer, policyJSON)
	if err != nil {
		t.Fatal(err)
	}
	full := virtualBundle(t, vs, ent, policysigtest.Parts{})
	noTlog := virtualBundle(t, vs, ent, policysigtest.Parts{NoTlog: true})
	noTlogNoTS := virtualBundle(t, vs, ent, policysigtest.Parts{NoTlog: true, NoTimestamps: true})
	mallory, err := vs.Sign("mallory@example.com", issuer, policyJSON)
	if err != nil {
		t.Fatal(err)
	}
	evilIssuer, err := vs.Sign(alice, "https://evil.example.com", policyJSON)
	if err != nil {
		t.Fatal(err)
	}
	prefixed, err := vs.Sign("xalice@example.com", issuer, policyJSON)
	if err != nil {
		t.Fatal(err)
	}
	other := newVirtual(t) // a Sigstore we do not trust
	foreign, err := other.Sign(alice, issuer, policyJSON)
	if err != nil {
		t.Fatal(err)
	}
	tampered := append([]byte{}, policyJSON...)
	tampered[len(tampered)-2] = ' '
	exact := policysig.WithIdentity(policysig.Identity{Issuer: issuer, SAN: alice})
	regex := policysig.WithIdentity(policysig.Identity{IssuerRegex: `https://issuer\.example\.com`, SANRegex: `alice@example\.com`})
	keyPub, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	cases := []struct {
		name    string
		tm      root.TrustedMaterial
		opts    []policysig.Option
		policy  []byte
		bundle  []byte
		wantErr error
		tlog    bool
	}{
		{name: "exact identity", tm: tm, opts: []policysig.Option{exact}, bundle: full, tlog: true},
		{name: "regex identity", tm: tm, opts: []policysig.Option{regex}, bundle: full, tlog: true},
		{name: "second identity in list matches", tm: tm, opts: []policysig.Option{policysig.WithIdentity(policysig.Identity{Issuer: issuer, SAN: "bob@example.com"}), exact}, bundle: full, tlog: true},
		{name: "without SET, inclusion proof and TSA still verify", tm: tm, opts: []policysig.Option{exact}, bundle: virtualBundle(t, vs, ent, policysigtest.Parts{NoPromise: true}), tlog: true},
		{name: "wrong SAN", tm: tm, opts: []policysig.Option{exact}, bundle: virtualBundle(t, vs, mallory, policysigtest.Parts{}), wantErr: policysig.ErrUntrustedSigner},
		{name: "wrong issuer", tm: tm, opts: []policysig.Option{exact}, bundle: virtualBundle(t, vs, evilIssuer, policysigtest.Parts{}), wantErr: policysig.ErrUntrustedSigner},
		{name: "regex is anchored", tm: tm, opts: []policysig.Option{regex}, bundle: virtualBundle(t, vs, prefixed, policysigtest.Parts{}), wantErr: policysig.ErrUntrustedSigner},
		{name: "tampered policy", tm: tm, opts: []policysig.Option{exact}, policy: tampered, bundle: full, wantErr: policysig.ErrVerification},
		{name: "untrusted Sigstore", tm: tm, opts: []policysig.Option{exact}, bundle: virtualBundle(t, other, foreign, policysigtest.Parts{}), wantErr: policysig.ErrVerification},
		{name: "no tlog entry refused by default", tm: tm, opts: []policysig.Option{exact}, bundle: noTlog, wantErr: policysig.ErrVerification},
		{name: "no tlog entry, TSA time, WithoutTlogUnsafe", tm: tm, opts: []policysig.Option{exact, policysig.WithoutTlogUnsafe()}, bundle: noTlog},
		{name: "no tlog and no timestamp: no verified time", tm: tm, opts: []policysig.Option{exact, policysig.WithoutTlogUnsafe()}, bundle: noTlogNoTS, wantErr: policysig.ErrVerification},
		{name: "trusted root with CT logs needs an SCT", tm: vs.VirtualSigstore, opts: []policysig.Option{exact}, bundle: full, wantErr: policysig.ErrVerification},
		{name: "SET only, no TSA in trusted root", tm: noTSA{tm}, opts: []policysig.Option{exact}, bundle: full, tlog: true},
		{name: "key-only group refuses certificates", tm: tm, opts: []policysig.Option{policysig.WithPublicKey(keyPub.Public())}, bundle: full, wantErr: policysig.ErrUntrustedSigner},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := policysig.New(c.tm, c.opts...)
			if err != nil {
				t.Fatal(err)
			}
			pol := policyJSON
			if c.policy != nil {
				pol = c.policy
			}
			res, err := v.Verify(pol, c.bundle)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("err = %v, want %v", err, c.wantErr)
				}
				if res != nil {
					t.Fatal("result returned with error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(policyJSON)
			if res.Digest != "sha256:"+hex.EncodeToString(sum[:]) {
				t.Errorf("digest %s", res.Digest)
			}
			if res.KeySigned || res.Identity != alice || res.Issuer != issuer || res.Signer() != alice {
				t.Errorf("signer: %+v", res)
			}
			if !c.tlog {
				if len(res.Tlog) != 0 {
					t.Errorf("tlog entries reported: %+v", res.Tlog)
				}
				if len(res.SignedTimestamps) == 0 {
					t.Error("no signed timestamp reported")
				}
				return
			}
			logID, _ := vs.RekorLogID()
			if len(res.Tlog) != 1 || res.Tlog[0].LogID != logID || res.Tlog[0].Kind != "hashedrekord" {
				t.Fatalf("tlog: %+v (log id %s)", res.Tlog, logID)
			}
			if _, ok := res.LogIndex(); !ok {
				t.Error("no log index")
			}
			entries, _ := ent.TlogEntries()
			if res.Tlog[0].LogIndex != entries[0].LogIndex() {
				t.Errorf("log index %d, want %d", res.Tlog[0].LogIndex, entries[0].LogIndex())
			}
			if bundleHasPromise := !strings.Contains(c.name, "without SET"); bundleHasPromise {
				if !res.IntegratedTime.Equal(entries[0].IntegratedTime()) || !res.Tlog[0].IntegratedTime.Equal(entries[0].IntegratedTime()) {
					t.Errorf("integrated time %v / %v, want %v", res.IntegratedTime, res.Tlog[0].IntegratedTime, entries[0].IntegratedTime())
				}
			} else if !res.Tlog[0].IntegratedTime.IsZero() || !res.IntegratedTime.IsZero() {
				t.Errorf("integrated time reported without a SET: %v", res.Tlog[0].IntegratedTime)
			}
		})
	}
}

func TestDSSERejected(t *testing.T) {
	vs := newVirtual(t)
	stmt := []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"runtime_policy.json","digest":{"sha256":"` + hex.EncodeToString(func() []byte { s := sha256.Sum256(policyJSON); return s[:] }()) + `"}}],"predicateType":"https://example.com/p","predicate":{}}`)
	ent, err := vs.Attest(alice, issuer, stmt)
	if err != nil {
		t.Fatal(err)
	}
	v, err := policysig.New(vs.TrustedMaterial(), policysig.WithIdentity(policysig.Identity{Issuer: issuer, SAN: alice}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(policyJSON, virtualBundle(t, vs, ent, policysigtest.Parts{})); !errors.Is(err, policysig.ErrNotMessageSignature) {
		t.Fatalf("err = %v, want ErrNotMessageSignature", err)
	}
}

func TestConfigRefusesOpenSigners(t *testing.T) {
	vs := newVirtual(t)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cases := []struct {
		name string
		tm   root.TrustedMaterial
		opts []policysig.Option
	}{
		{"no signer", vs, nil},
		{"identity without issuer", vs, []policysig.Option{policysig.WithIdentity(policysig.Identity{SAN: alice})}},
		{"identity without SAN", vs, []policysig.Option{policysig.WithIdentity(policysig.Identity{Issuer: issuer})}},
		{"identity with both SAN and regex", vs, []policysig.Option{policysig.WithIdentity(policysig.Identity{Issuer: issuer, SAN: alice, SANRegex: ".*"})}},
		{"bad regex", vs, []policysig.Option{policysig.WithIdentity(policysig.Identity{Issuer: issuer, SANRegex: "("})}},
		{"identities with a trusted root without Fulcio", &root.BaseTrustedMaterial{}, []policysig.Option{policysig.WithIdentity(policysig.Identity{Issuer: issuer, SAN: alice})}},
		{"keyless without trusted root", nil, []policysig.Option{policysig.WithIdentity(policysig.Identity{Issuer: issuer, SAN: alice})}},
		{"key with tlog but no trusted root", nil, []policysig.Option{policysig.WithPublicKey(k.Public())}},
		{"bad PEM", vs, []policysig.Option{policysig.WithPublicKeyPEM([]byte("not a key"))}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := policysig.New(c.tm, c.opts...); !errors.Is(err, policysig.ErrConfig) {
				t.Fatalf("err = %v, want ErrConfig", err)
			}
		})
	}
	if _, err := policysig.ParseSignerPolicy([]byte(`{"identites":[]}`)); !errors.Is(err, policysig.ErrConfig) {
		t.Fatalf("typo field accepted: %v", err)
	}
	if _, err := (policysig.SignerPolicy{Identities: []policysig.Identity{{Issuer: issuer, SAN: alice}}, KeyOnlyWithoutTlogUnsafe: true}).Options(); !errors.Is(err, policysig.ErrConfig) {
		t.Fatalf("key_only with identities accepted: %v", err)
	}
}

func TestSignWithKeyRoundTrip(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	b, err := policysig.SignWithKey(context.Background(), policyJSON, k)
	if err != nil {
		t.Fatal(err)
	}
	tampered := append(append([]byte{}, policyJSON...), ' ')
	vs := newVirtual(t)
	cases := []struct {
		name    string
		tm      root.TrustedMaterial
		opts    []policysig.Option
		policy  []byte
		wantErr error
	}{
		{name: "key, no tlog, unsafe allowed, no trusted root", opts: []policysig.Option{policysig.WithPublicKey(k.Public()), policysig.WithoutTlogUnsafe()}},
		{name: "rotation: second key matches", tm: vs.TrustedMaterial(), opts: []policysig.Option{policysig.WithPublicKey(other.Public()), policysig.WithPublicKey(k.Public()), policysig.WithoutTlogUnsafe()}},
		{name: "tlog required by default", tm: vs.TrustedMaterial(), opts: []policysig.Option{policysig.WithPublicKey(k.Public())}, wantErr: policysig.ErrVerification},
		{name: "wrong key", opts: []policysig.Option{policysig.WithPublicKey(other.Public()), policysig.WithoutTlogUnsafe()}, wantErr: policysig.ErrVerification},
		{name: "tampered", opts: []policysig.Option{policysig.WithPublicKey(k.Public()), policysig.WithoutTlogUnsafe()}, policy: tampered, wantErr: policysig.ErrVerification},
		{name: "identity-only group refuses keys", tm: vs.TrustedMaterial(), opts: []policysig.Option{policysig.WithIdentity(policysig.Identity{Issuer: issuer, SAN: alice}), policysig.WithoutTlogUnsafe()}, wantErr: policysig.ErrUntrustedSigner},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := policysig.New(c.tm, c.opts...)
			if err != nil {
				t.Fatal(err)
			}
			pol := policyJSON
			if c.policy != nil {
				pol = c.policy
			}
			res, err := v.Verify(pol, b)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("err = %v, want %v", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !res.KeySigned || res.KeyID != keyID(t, k.Public()) || res.Identity != "" || len(res.Tlog) != 0 {
				t.Fatalf("result %+v", res)
			}
		})
	}
}

func keyID(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(s[:])
}
