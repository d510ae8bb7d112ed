// Package policysigtest makes keyless Sigstore policy bundles for tests of
// policysig and of the packages that use it (hub/gitops, the hub, the
// auditor): it turns sigstore-go's virtual Sigstore (pkg/testing/ca, a
// Fulcio, Rekor and TSA in memory) into the v0.3 bundle JSON that cosign
// writes, with a signed entry timestamp and an inclusion proof.
//
// It is for tests only (nothing in the product imports it) and must not
// import policysig, so that policysig's own tests can use it.
package policysigtest

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"google.golang.org/protobuf/encoding/protojson"
)

// Sigstore is a virtual Sigstore instance.
type Sigstore struct{ *ca.VirtualSigstore }

// New starts a virtual Sigstore with fresh keys.
func New() (*Sigstore, error) {
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		return nil, err
	}
	return &Sigstore{vs}, nil
}

// noCT is trusted material without CT logs: the virtual Fulcio does not
// embed SCTs, as a private Sigstore without certificate transparency.
type noCT struct{ *ca.VirtualSigstore }

func (noCT) CTLogs() map[string]*root.TransparencyLog { return nil }

// TrustedMaterial is what a verifier should trust for this instance:
// Fulcio, Rekor and the TSA, without CT logs.
func (s *Sigstore) TrustedMaterial() root.TrustedMaterial { return noCT{s.VirtualSigstore} }

// Parts leaves parts out of a bundle, to test what a verifier requires.
type Parts struct {
	NoTlog, NoTimestamps, NoPromise bool
}

// SignBundle signs artifact as identity (certificate SAN, an e-mail
// address) from issuer and returns the bundle JSON.
func (s *Sigstore) SignBundle(identity, issuer string, artifact []byte, parts Parts) ([]byte, error) {
	e, err := s.Sign(identity, issuer, artifact)
	if err != nil {
		return nil, err
	}
	return s.BundleJSON(e, parts)
}

// BundleJSON turns a virtual-Sigstore test entity (Sign or Attest) into
// bundle JSON.
func (s *Sigstore) BundleJSON(e *ca.TestEntity, parts Parts) ([]byte, error) {
	vc, err := e.VerificationContent()
	if err != nil {
		return nil, err
	}
	vm := &protobundle.VerificationMaterial{
		Content: &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: vc.Certificate().Raw}},
	}
	if !parts.NoTlog {
		entries, err := e.TlogEntries()
		if err != nil {
			return nil, err
		}
		for _, en := range entries {
			tle, err := s.completeEntry(en.TransparencyLogEntry(), parts.NoPromise)
			if err != nil {
				return nil, err
			}
			vm.TlogEntries = append(vm.TlogEntries, tle)
		}
	}
	if !parts.NoTimestamps {
		ts, err := e.Timestamps()
		if err != nil {
			return nil, err
		}
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
		return nil, err
	}
	if env := sc.EnvelopeContent(); env != nil {
		raw := env.RawEnvelope()
		pe := &protodsse.Envelope{Payload: []byte(raw.Payload), PayloadType: raw.PayloadType}
		if dec, err := base64.StdEncoding.DecodeString(raw.Payload); err == nil {
			pe.Payload = dec
		}
		for _, sg := range raw.Signatures {
			sig, err := base64.StdEncoding.DecodeString(sg.Sig)
			if err != nil {
				return nil, fmt.Errorf("policysigtest: DSSE signature: %w", err)
			}
			pe.Signatures = append(pe.Signatures, &protodsse.Signature{Sig: sig, Keyid: sg.KeyID})
		}
		pb.Content = &protobundle.Bundle_DsseEnvelope{DsseEnvelope: pe}
	} else {
		ms := sc.MessageSignatureContent()
		pb.Content = &protobundle.Bundle_MessageSignature{MessageSignature: &protocommon.MessageSignature{
			MessageDigest: &protocommon.HashOutput{Algorithm: protocommon.HashAlgorithm_SHA2_256, Digest: ms.Digest()},
			Signature:     ms.Signature(),
		}}
	}
	return protojson.Marshal(pb)
}

// completeEntry fills in a virtual log entry as Rekor v1 returns it:
// kind and version, a signed entry timestamp and an inclusion proof with
// a signed checkpoint (bundles v0.2+ need the proof).
func (s *Sigstore) completeEntry(in *protorekor.TransparencyLogEntry, noPromise bool) (*protorekor.TransparencyLogEntry, error) {
	var kv struct {
		Kind       string `json:"kind"`
		APIVersion string `json:"apiVersion"`
	}
	if err := json.Unmarshal(in.CanonicalizedBody, &kv); err != nil {
		return nil, fmt.Errorf("policysigtest: entry body: %w", err)
	}
	out := &protorekor.TransparencyLogEntry{
		LogIndex: in.LogIndex, LogId: in.LogId, IntegratedTime: in.IntegratedTime, CanonicalizedBody: in.CanonicalizedBody,
		KindVersion: &protorekor.KindVersion{Kind: kv.Kind, Version: kv.APIVersion},
	}
	if !noPromise {
		set, err := s.RekorSignPayload(tlog.RekorPayload{Body: base64.StdEncoding.EncodeToString(in.CanonicalizedBody), IntegratedTime: in.IntegratedTime, LogIndex: in.LogIndex, LogID: hex.EncodeToString(in.LogId.KeyId)})
		if err != nil {
			return nil, err
		}
		out.InclusionPromise = &protorekor.InclusionPromise{SignedEntryTimestamp: set}
	}
	ip, err := s.GetInclusionProof(in.CanonicalizedBody)
	if err != nil {
		return nil, err
	}
	rootHash, err := hex.DecodeString(*ip.RootHash)
	if err != nil {
		return nil, err
	}
	out.InclusionProof = &protorekor.InclusionProof{LogIndex: *ip.LogIndex, TreeSize: *ip.TreeSize, RootHash: rootHash, Checkpoint: &protorekor.Checkpoint{Envelope: *ip.Checkpoint}}
	for _, h := range ip.Hashes {
		b, err := hex.DecodeString(h)
		if err != nil {
			return nil, err
		}
		out.InclusionProof.Hashes = append(out.InclusionProof.Hashes, b)
	}
	return out, nil
}
