package policysig_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ratatouille/rat/audit/policysig"
)

const (
	alice  = "alice@example.com"
	issuer = "https://issuer.example.com"
)

var policyJSON = []byte(`{"meta":{"version":1},"release":0,"digests":{"/usr/bin/true":["` + strings.Repeat("ab", 32) + `"]},"excludes":[],"keyrings":{},"ima":{"ignored_keyrings":[],"log_hash_alg":"sha256","dm_policy":null},"ima-buf":{},"verification-keys":""}`)

// noCT is a private Sigstore without certificate transparency: the
// virtual Fulcio does not embed SCTs, so its trusted material must not
// advertise CT logs (a trusted root that does is tested separately).
type noCT struct{ *ca.VirtualSigstore }

func (noCT) CTLogs() map[string]*root.TransparencyLog { return nil }

// noTSA hides the virtual TSA, as a trusted root without timestamp
// authorities would.
type noTSA struct{ noCT }

func (noTSA) TimestampingAuthorities() []root.TimestampingAuthority { return nil }

// bundleParts controls which parts of a virtual-Sigstore entity go into
// the bundle JSON.
type bundleParts struct {
	noTlog, noTimestamps, noPromise bool
}

// virtualBundle turns a virtual-Sigstore test entity into the v0.3 bundle
// JSON that cosign or `rat policy sign` would write.
func virtualBundle(t testing.TB, vs *ca.VirtualSigstore, e *ca.TestEntity, parts bundleParts) []byte {
	t.Helper()
	vc, err := e.VerificationContent()
	if err != nil {
		t.Fatal(err)
	}
	vm := &protobundle.VerificationMaterial{
		Content: &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: vc.Certificate().Raw}},
	}
	if !parts.noTlog {
		entries, _ := e.TlogEntries()
		for _, en := range entries {
			vm.TlogEntries = append(vm.TlogEntries, virtualTLE(t, vs, en.TransparencyLogEntry(), parts.noPromise))
		}
	}
	if !parts.noTimestamps {
		ts, _ := e.Timestamps()
		if len(ts) > 0 {
			vm.TimestampVerificationData = &protobundle.TimestampVerificationData{}
			for _, t := range ts {
				vm.TimestampVerificationData.Rfc3161Timestamps = append(vm.TimestampVerificationData.Rfc3161Timestamps, &protocommon.RFC3161SignedTimestamp{SignedTimestamp: t})
			}
		}
	}
	pb := &protobundle.Bundle{MediaType: "application/vnd.dev.sigstore.bundle.v0.3+json", VerificationMaterial: vm}
	sc, err := e.SignatureContent()
	if err != nil {
		t.Fatal(err)
	}
	if env := sc.EnvelopeContent(); env != nil {
		raw := env.RawEnvelope()
		pe := &protodsse.Envelope{Payload: []byte(raw.Payload), PayloadType: raw.PayloadType}
		if dec, err := base64.StdEncoding.DecodeString(raw.Payload); err == nil {
			pe.Payload = dec
		}
		for _, s := range raw.Signatures {
			sig, _ := base64.StdEncoding.DecodeString(s.Sig)
			pe.Signatures = append(pe.Signatures, &protodsse.Signature{Sig: sig, Keyid: s.KeyID})
		}
		pb.Content = &protobundle.Bundle_DsseEnvelope{DsseEnvelope: pe}
	} else {
		ms := sc.MessageSignatureContent()
		pb.Content = &protobundle.Bundle_MessageSignature{MessageSignature: &protocommon.MessageSignature{
			MessageDigest: &protocommon.HashOutput{Algorithm: protocommon.HashAlgorithm_SHA2_256, Digest: ms.Digest()},
			Signature:     ms.Signature(),
		}}
	}
	b, err := protojson.Marshal(pb)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// virtualTLE completes a virtual log entry as Rekor v1 returns it: kind
// and version, a signed entry timestamp and an inclusion proof with a
// signed checkpoint (v0.2+ bundles need the proof).
func virtualTLE(t testing.TB, vs *ca.VirtualSigstore, in *protorekor.TransparencyLogEntry, noPromise bool) *protorekor.TransparencyLogEntry {
	t.Helper()
	var kv struct {
		Kind       string `json:"kind"`
		APIVersion string `json:"apiVersion"`
	}
	if err := json.Unmarshal(in.CanonicalizedBody, &kv); err != nil {
		t.Fatal(err)
	}
	out := &protorekor.TransparencyLogEntry{
		LogIndex: in.LogIndex, LogId: in.LogId, IntegratedTime: in.IntegratedTime, CanonicalizedBody: in.CanonicalizedBody,
		KindVersion: &protorekor.KindVersion{Kind: kv.Kind, Version: kv.APIVersion},
	}
	if !noPromise {
		set, err := vs.RekorSignPayload(tlog.RekorPayload{Body: base64.StdEncoding.EncodeToString(in.CanonicalizedBody), IntegratedTime: in.IntegratedTime, LogIndex: in.LogIndex, LogID: hex.EncodeToString(in.LogId.KeyId)})
		if err != nil {
			t.Fatal(err)
		}
		out.InclusionPromise = &protorekor.InclusionPromise{SignedEntryTimestamp: set}
	}
	ip, err := vs.GetInclusionProof(in.CanonicalizedBody)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := hex.DecodeString(*ip.RootHash)
	out.InclusionProof = &protorekor.InclusionProof{LogIndex: *ip.LogIndex, TreeSize: *ip.TreeSize, RootHash: root, Checkpoint: &protorekor.Checkpoint{Envelope: *ip.Checkpoint}}
	for _, h := range ip.Hashes {
		b, _ := hex.DecodeString(h)
		out.InclusionProof.Hashes = append(out.InclusionProof.Hashes, b)
	}
	return out
}

func newVirtual(t testing.TB) *ca.VirtualSigstore {
	t.Helper()
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

func TestKeylessVirtualSigstore(t *testing.T) {
	vs := newVirtual(t)
	tm := noCT{vs}
	ent, err := vs.Sign(alice, issuer, policyJSON)
	if err != nil {
		t.Fatal(err)
	}
	full := virtualBundle(t, vs, ent, bundleParts{})
	noTlog := virtualBundle(t, vs, ent, bundleParts{noTlog: true})
	noTlogNoTS := virtualBundle(t, vs, ent, bundleParts{noTlog: true, noTimestamps: true})
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
		{name: "without SET, inclusion proof and TSA still verify", tm: tm, opts: []policysig.Option{exact}, bundle: virtualBundle(t, vs, ent, bundleParts{noPromise: true}), tlog: true},
		{name: "wrong SAN", tm: tm, opts: []policysig.Option{exact}, bundle: virtualBundle(t, vs, mallory, bundleParts{}), wantErr: policysig.ErrUntrustedSigner},
		{name: "wrong issuer", tm: tm, opts: []policysig.Option{exact}, bundle: virtualBundle(t, vs, evilIssuer, bundleParts{}), wantErr: policysig.ErrUntrustedSigner},
		{name: "regex is anchored", tm: tm, opts: []policysig.Option{regex}, bundle: virtualBundle(t, vs, prefixed, bundleParts{}), wantErr: policysig.ErrUntrustedSigner},
		{name: "tampered policy", tm: tm, opts: []policysig.Option{exact}, policy: tampered, bundle: full, wantErr: policysig.ErrVerification},
		{name: "untrusted Sigstore", tm: tm, opts: []policysig.Option{exact}, bundle: virtualBundle(t, other, foreign, bundleParts{}), wantErr: policysig.ErrVerification},
		{name: "no tlog entry refused by default", tm: tm, opts: []policysig.Option{exact}, bundle: noTlog, wantErr: policysig.ErrVerification},
		{name: "no tlog entry, TSA time, WithoutTlogUnsafe", tm: tm, opts: []policysig.Option{exact, policysig.WithoutTlogUnsafe()}, bundle: noTlog},
		{name: "no tlog and no timestamp: no verified time", tm: tm, opts: []policysig.Option{exact, policysig.WithoutTlogUnsafe()}, bundle: noTlogNoTS, wantErr: policysig.ErrVerification},
		{name: "trusted root with CT logs needs an SCT", tm: vs, opts: []policysig.Option{exact}, bundle: full, wantErr: policysig.ErrVerification},
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
	v, err := policysig.New(noCT{vs}, policysig.WithIdentity(policysig.Identity{Issuer: issuer, SAN: alice}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(policyJSON, virtualBundle(t, vs, ent, bundleParts{})); !errors.Is(err, policysig.ErrNotMessageSignature) {
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
		{name: "rotation: second key matches", tm: noCT{vs}, opts: []policysig.Option{policysig.WithPublicKey(other.Public()), policysig.WithPublicKey(k.Public()), policysig.WithoutTlogUnsafe()}},
		{name: "tlog required by default", tm: noCT{vs}, opts: []policysig.Option{policysig.WithPublicKey(k.Public())}, wantErr: policysig.ErrVerification},
		{name: "wrong key", opts: []policysig.Option{policysig.WithPublicKey(other.Public()), policysig.WithoutTlogUnsafe()}, wantErr: policysig.ErrVerification},
		{name: "tampered", opts: []policysig.Option{policysig.WithPublicKey(k.Public()), policysig.WithoutTlogUnsafe()}, policy: tampered, wantErr: policysig.ErrVerification},
		{name: "identity-only group refuses keys", tm: noCT{vs}, opts: []policysig.Option{policysig.WithIdentity(policysig.Identity{Issuer: issuer, SAN: alice}), policysig.WithoutTlogUnsafe()}, wantErr: policysig.ErrUntrustedSigner},
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
