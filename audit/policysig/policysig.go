package policysig

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"time"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
)

// MaxBundleSize bounds the bundle JSON we are willing to parse. Real
// bundles are a few KiB (a certificate chain, one log entry, maybe a
// timestamp); the bound keeps a hostile webhook payload from making the
// hub parse megabytes of protojson.
const MaxBundleSize = 1 << 20

// Error classes. Every error Verify returns wraps exactly one of them, so
// callers (the hub's rejected-policy record, the CLI's exit code) can say
// why a policy was refused without string matching.
var (
	// ErrMalformedBundle: not a Sigstore bundle we can read (bad JSON,
	// unknown media type, missing parts, too big).
	ErrMalformedBundle = errors.New("policysig: malformed bundle")
	// ErrNotMessageSignature: the bundle holds a DSSE envelope. Policies
	// are signed as blobs (cosign sign-blob); an attestation about some
	// other subject must never be taken as a signature over a policy.
	ErrNotMessageSignature = errors.New("policysig: bundle is not a message signature (DSSE envelopes are not accepted for policies)")
	// ErrUntrustedSigner: the signature may be valid, but the signer is
	// not on the allow-list (wrong identity, wrong issuer, wrong key, or
	// a key-signed bundle where only identities are allowed and vice versa).
	ErrUntrustedSigner = errors.New("policysig: signer not allowed")
	// ErrVerification: the cryptographic checks failed (signature,
	// digest, certificate chain, transparency log, timestamps).
	ErrVerification = errors.New("policysig: verification failed")
	// ErrConfig: the Verifier was configured inconsistently.
	ErrConfig = errors.New("policysig: bad configuration")
)

// Identity is one allowed keyless signer: the Fulcio certificate's OIDC
// issuer and subject alternative name. Each of the two is given exactly
// (Issuer, SAN) or as a regular expression (IssuerRegex, SANRegex), never
// both and never neither: an allow-list entry that leaves either open
// would accept anyone who can get a certificate from the trusted Fulcio.
//
// Regular expressions are anchored (matched against the whole value),
// unlike cosign's --certificate-identity-regexp, so that
// "https://github.com/acme/.*" cannot be satisfied by a SAN that merely
// contains it.
type Identity struct {
	Issuer      string `json:"issuer,omitempty"`
	IssuerRegex string `json:"issuer_regex,omitempty"`
	SAN         string `json:"san,omitempty"`
	SANRegex    string `json:"san_regex,omitempty"`
}

func (id Identity) String() string {
	iss, san := id.Issuer, id.SAN
	if id.IssuerRegex != "" {
		iss = "/" + id.IssuerRegex + "/"
	}
	if id.SANRegex != "" {
		san = "/" + id.SANRegex + "/"
	}
	return san + " (issuer " + iss + ")"
}

func anchor(re string) string {
	if re == "" {
		return ""
	}
	return "^(?:" + re + ")$"
}

func (id Identity) certificateIdentity() (verify.CertificateIdentity, error) {
	if (id.Issuer == "") == (id.IssuerRegex == "") {
		return verify.CertificateIdentity{}, fmt.Errorf("%w: identity %s: give exactly one of issuer, issuer_regex", ErrConfig, id)
	}
	if (id.SAN == "") == (id.SANRegex == "") {
		return verify.CertificateIdentity{}, fmt.Errorf("%w: identity %s: give exactly one of san, san_regex", ErrConfig, id)
	}
	for _, re := range []string{id.IssuerRegex, id.SANRegex} {
		if re != "" {
			if _, err := regexp.Compile(anchor(re)); err != nil {
				return verify.CertificateIdentity{}, fmt.Errorf("%w: identity %s: %w", ErrConfig, id, err)
			}
		}
	}
	ci, err := verify.NewShortCertificateIdentity(id.Issuer, anchor(id.IssuerRegex), id.SAN, anchor(id.SANRegex))
	if err != nil {
		return verify.CertificateIdentity{}, fmt.Errorf("%w: identity %s: %w", ErrConfig, id, err)
	}
	return ci, nil
}

// TlogEntry is one transparency-log entry of the bundle that verified
// against a Rekor log of the trusted root.
type TlogEntry struct {
	LogIndex int64  `json:"log_index"`
	LogID    string `json:"log_id"` // hex SHA-256 of the log's public key
	// IntegratedTime is set only when the entry carries a signed entry
	// timestamp (Rekor v1 inclusion promise) that verified: an inclusion
	// proof alone does not cover the integrated time.
	IntegratedTime time.Time `json:"integrated_time,omitzero"`
	Kind           string    `json:"kind,omitempty"`    // e.g. hashedrekord
	Version        string    `json:"version,omitempty"` // e.g. 0.0.1
}

// Result is what a successful Verify establishes about a policy.
type Result struct {
	// Digest is "sha256:<hex>" of the policy bytes exactly as verified.
	Digest string `json:"digest"`
	// KeySigned is true for bundles verified with a configured public key
	// (KeyID set), false for keyless bundles (Identity, Issuer set).
	KeySigned bool `json:"key_signed"`
	// Identity is the certificate's subject alternative name (keyless).
	Identity string `json:"identity,omitempty"`
	// Issuer is the certificate's OIDC issuer extension (keyless).
	Issuer string `json:"issuer,omitempty"`
	// CertificateIssuer is the certificate's X.509 issuer (the Fulcio CA).
	CertificateIssuer string `json:"certificate_issuer,omitempty"`
	// KeyID is "sha256:<hex>" of the PKIX DER of the public key that
	// verified a key-signed bundle.
	KeyID string `json:"key_id,omitempty"`
	// Tlog lists the verified transparency-log entries (empty when the
	// bundle has none and the caller allowed that with WithoutTlogUnsafe).
	Tlog []TlogEntry `json:"tlog,omitempty"`
	// IntegratedTime is the earliest verified log integrated time (zero
	// when there is none).
	IntegratedTime time.Time `json:"integrated_time,omitzero"`
	// SignedTimestamps are the verified RFC 3161 timestamps.
	SignedTimestamps []time.Time `json:"signed_timestamps,omitempty"`
	// MediaType is the bundle's media type (its version).
	MediaType string `json:"media_type"`
}

// LogIndex returns the first verified entry's log index and true, or
// 0, false when there is no verified entry.
func (r *Result) LogIndex() (int64, bool) {
	if r == nil || len(r.Tlog) == 0 {
		return 0, false
	}
	return r.Tlog[0].LogIndex, true
}

// Signer names who signed: the SAN for keyless bundles, the key id for
// key-signed ones.
func (r *Result) Signer() string {
	if r.KeySigned {
		return "key " + r.KeyID
	}
	return r.Identity
}

// Option configures a Verifier.
type Option func(*config) error

type publicKey struct {
	key crypto.PublicKey
	id  string
}

type config struct {
	identities []Identity
	keys       []publicKey
	noTlog     bool
}

// WithIdentity adds an allowed keyless signer. Repeatable: any one
// matching identity is enough.
func WithIdentity(id Identity) Option {
	return func(c *config) error {
		if _, err := id.certificateIdentity(); err != nil {
			return err
		}
		c.identities = append(c.identities, id)
		return nil
	}
}

// WithPublicKey adds an allowed signing key (cosign --key signing).
// Repeatable, e.g. during a key rotation.
func WithPublicKey(pub crypto.PublicKey) Option {
	return func(c *config) error {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return fmt.Errorf("%w: public key: %w", ErrConfig, err)
		}
		if _, err := signature.LoadDefaultVerifier(pub); err != nil {
			return fmt.Errorf("%w: public key: %w", ErrConfig, err)
		}
		sum := sha256.Sum256(der)
		c.keys = append(c.keys, publicKey{key: pub, id: "sha256:" + hex.EncodeToString(sum[:])})
		return nil
	}
}

// WithPublicKeyPEM is WithPublicKey for a PEM "PUBLIC KEY" block (the
// cosign.pub that `cosign generate-key-pair` writes).
func WithPublicKeyPEM(pemBytes []byte) Option {
	return func(c *config) error {
		pub, err := cryptoutils.UnmarshalPEMToPublicKey(pemBytes)
		if err != nil {
			return fmt.Errorf("%w: public key PEM: %w", ErrConfig, err)
		}
		return WithPublicKey(pub)(c)
	}
}

// WithoutTlogUnsafe accepts bundles without a transparency-log entry.
//
// By default a bundle must carry at least one entry that verifies against
// a Rekor log of the trusted root, so that every accepted policy is
// publicly (or privately) auditable and a stolen key cannot sign in
// secret. Fleets without internet that sign with a key and
// --tlog-upload=false need this option; it gives up that auditability.
// Entries that a bundle does carry are still verified when the trusted
// root has Rekor logs.
func WithoutTlogUnsafe() Option {
	return func(c *config) error {
		c.noTlog = true
		return nil
	}
}

// Verifier checks policy bundles against one trusted root and one signer
// policy. It is safe for concurrent use.
type Verifier struct {
	trusted root.TrustedMaterial
	cfg     config
}

// New returns a Verifier. trusted is the parsed trusted_root.json (see
// ParseTrustedRoot); it may be nil only for a key-only verifier built with
// WithoutTlogUnsafe, which then needs no Sigstore services at all. At
// least one WithIdentity or WithPublicKey is required: there is no way to
// accept any signer.
func New(trusted root.TrustedMaterial, opts ...Option) (*Verifier, error) {
	if tr, ok := trusted.(*root.TrustedRoot); ok && tr == nil {
		trusted = nil // a typed nil must not pass for a trusted root
	}
	v := &Verifier{trusted: trusted}
	for _, o := range opts {
		if err := o(&v.cfg); err != nil {
			return nil, err
		}
	}
	if len(v.cfg.identities) == 0 && len(v.cfg.keys) == 0 {
		return nil, fmt.Errorf("%w: no allowed signer (need an identity or a public key)", ErrConfig)
	}
	if trusted == nil {
		if len(v.cfg.identities) > 0 || !v.cfg.noTlog {
			return nil, fmt.Errorf("%w: a trusted root is required unless the verifier is key-only with WithoutTlogUnsafe", ErrConfig)
		}
		v.trusted = &root.BaseTrustedMaterial{}
	}
	if len(v.cfg.identities) > 0 && len(v.trusted.FulcioCertificateAuthorities()) == 0 {
		return nil, fmt.Errorf("%w: identities are allowed but the trusted root has no certificate authority", ErrConfig)
	}
	return v, nil
}

// ParseTrustedRoot parses a trusted_root.json (Sigstore's
// application/vnd.dev.sigstore.trustedroot+json), offline.
func ParseTrustedRoot(b []byte) (*root.TrustedRoot, error) {
	tr, err := root.NewTrustedRootFromJSON(b)
	if err != nil {
		return nil, fmt.Errorf("policysig: trusted root: %w", err)
	}
	return tr, nil
}

// ParseBundle reads a Sigstore bundle (v0.1 to v0.3 JSON) and accepts it
// only if it is a message signature. It does no cryptography; Verify
// calls it first.
func ParseBundle(b []byte) (*bundle.Bundle, error) {
	if len(b) > MaxBundleSize {
		return nil, fmt.Errorf("%w: %d bytes (limit %d)", ErrMalformedBundle, len(b), MaxBundleSize)
	}
	var bd bundle.Bundle
	bd.Bundle = new(protobundle.Bundle)
	if err := bd.UnmarshalJSON(b); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedBundle, err)
	}
	if bd.GetDsseEnvelope() != nil {
		return nil, ErrNotMessageSignature
	}
	if ms := bd.GetMessageSignature(); ms == nil || len(ms.GetSignature()) == 0 {
		return nil, fmt.Errorf("%w: no message signature", ErrMalformedBundle)
	}
	if bd.GetVerificationMaterial() == nil {
		return nil, fmt.Errorf("%w: no verification material", ErrMalformedBundle)
	}
	return &bd, nil
}

// Verify checks that bundleJSON is a valid Sigstore signature over
// exactly policy, made by an allowed signer, and returns what it
// established. It never parses policy: the policy is opaque bytes here,
// and callers must parse it only after Verify succeeds.
func (v *Verifier) Verify(policy, bundleJSON []byte) (*Result, error) {
	b, err := ParseBundle(bundleJSON)
	if err != nil {
		return nil, err
	}
	vc, err := b.VerificationContent()
	if err != nil {
		return nil, fmt.Errorf("%w: verification material: %w", ErrMalformedBundle, err)
	}
	if vc.Certificate() != nil {
		return v.verifyKeyless(policy, b)
	}
	if vc.PublicKey() != nil {
		return v.verifyKey(policy, b)
	}
	return nil, fmt.Errorf("%w: neither certificate nor public key", ErrMalformedBundle)
}

// verifierOptions derives the sigstore-go verifier configuration from our
// policy and from what the bundle carries: the transparency log is
// required unless WithoutTlogUnsafe, and every kind of timestamp present
// (and verifiable with the trusted root) must verify, as the
// sigstore-conformance client does.
func (v *Verifier) verifierOptions(b *bundle.Bundle, keyless bool) ([]verify.VerifierOption, bool, error) {
	var opts []verify.VerifierOption
	entries, err := b.TlogEntries()
	if err != nil {
		return nil, false, fmt.Errorf("%w: tlog entries: %w", ErrMalformedBundle, err)
	}
	useTlog := !v.cfg.noTlog || (len(entries) > 0 && len(v.trusted.RekorLogs()) > 0)
	if useTlog {
		if len(entries) == 0 {
			return nil, false, fmt.Errorf("%w: bundle has no transparency-log entry (required)", ErrVerification)
		}
		opts = append(opts, verify.WithTransparencyLog(1))
	}
	ts, err := b.Timestamps()
	if err != nil {
		return nil, false, fmt.Errorf("%w: timestamps: %w", ErrMalformedBundle, err)
	}
	// Observer timestamps: signed entry timestamps of verified log
	// entries and RFC 3161 timestamps from TSAs of the trusted root. Only
	// the ones that verify are used (and reported); a timestamp from a
	// TSA the trusted root does not list is ignored rather than trusted.
	timeSources := (useTlog && b.HasInclusionPromise()) || (len(ts) > 0 && len(v.trusted.TimestampingAuthorities()) > 0)
	if keyless {
		if len(v.trusted.CTLogs()) > 0 {
			// A trusted root that lists CT logs belongs to a Fulcio that
			// embeds SCTs; a certificate without one was not logged.
			opts = append(opts, verify.WithSignedCertificateTimestamps(1))
		}
		// Short-lived certificates are only meaningful at a verified
		// time, so keyless bundles always need one observer timestamp.
		opts = append(opts, verify.WithObserverTimestamps(1))
	} else if timeSources {
		opts = append(opts, verify.WithObserverTimestamps(1))
	} else {
		// A long-lived key without validity window needs no time.
		opts = append(opts, verify.WithNoObserverTimestamps())
	}
	return opts, useTlog, nil
}

func (v *Verifier) verifyKeyless(policy []byte, b *bundle.Bundle) (*Result, error) {
	if len(v.cfg.identities) == 0 {
		return nil, fmt.Errorf("%w: bundle is certificate-signed but only public keys are allowed", ErrUntrustedSigner)
	}
	opts, useTlog, err := v.verifierOptions(b, true)
	if err != nil {
		return nil, err
	}
	sv, err := verify.NewVerifier(v.trusted, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	pol := []verify.PolicyOption{}
	for _, id := range v.cfg.identities {
		ci, err := id.certificateIdentity()
		if err != nil {
			return nil, err
		}
		pol = append(pol, verify.WithCertificateIdentity(ci))
	}
	// Cryptography first, with identities ignored, so that a bad
	// signature is reported as ErrVerification and only a good signature
	// by someone else as ErrUntrustedSigner.
	if _, err := sv.Verify(b, verify.NewPolicy(verify.WithArtifact(bytes.NewReader(policy)), verify.WithoutIdentitiesUnsafe())); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrVerification, err)
	}
	vr, err := sv.Verify(b, verify.NewPolicy(verify.WithArtifact(bytes.NewReader(policy)), pol...))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUntrustedSigner, err)
	}
	if vr.Signature == nil || vr.Signature.Certificate == nil {
		return nil, fmt.Errorf("%w: no certificate in verification result", ErrVerification)
	}
	res := v.result(policy, b, vr, useTlog, v.trusted)
	cs := vr.Signature.Certificate
	res.Identity = cs.SubjectAlternativeName
	res.Issuer = cs.Issuer
	res.CertificateIssuer = cs.CertificateIssuer
	return res, nil
}

func (v *Verifier) verifyKey(policy []byte, b *bundle.Bundle) (*Result, error) {
	if len(v.cfg.keys) == 0 {
		return nil, fmt.Errorf("%w: bundle is key-signed but only keyless identities are allowed", ErrUntrustedSigner)
	}
	opts, useTlog, err := v.verifierOptions(b, false)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, k := range v.cfg.keys {
		tm := v.withKey(k)
		sv, err := verify.NewVerifier(tm, opts...)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		vr, err := sv.Verify(b, verify.NewPolicy(verify.WithArtifact(bytes.NewReader(policy)), verify.WithKey()))
		if err != nil {
			errs = append(errs, fmt.Errorf("key %s: %w", k.id, err))
			continue
		}
		res := v.result(policy, b, vr, useTlog, tm)
		res.KeySigned = true
		res.KeyID = k.id
		return res, nil
	}
	// With one configured key a failure may be a bad signature or a
	// different key; sigstore-go does not say which, so we report it as
	// a verification failure naming the keys tried.
	return nil, fmt.Errorf("%w: %w", ErrVerification, errors.Join(errs...))
}

// withKey layers one allowed key over the trusted root. The bundle's key
// hint is ignored on purpose: the hint is unauthenticated, and the
// allow-list, not the bundle, decides which key must have signed.
func (v *Verifier) withKey(k publicKey) root.TrustedMaterial {
	km := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) {
		sv, err := signature.LoadDefaultVerifier(k.key)
		if err != nil {
			return nil, err
		}
		return root.NewExpiringKey(sv, time.Time{}, time.Time{}), nil
	})
	return root.TrustedMaterialCollection{km, v.trusted}
}

func (v *Verifier) result(policy []byte, b *bundle.Bundle, vr *verify.VerificationResult, useTlog bool, tm root.TrustedMaterial) *Result {
	sum := sha256.Sum256(policy)
	res := &Result{Digest: "sha256:" + hex.EncodeToString(sum[:]), MediaType: b.GetMediaType()}
	for _, ts := range vr.VerifiedTimestamps {
		switch ts.Type {
		case "Tlog":
			if res.IntegratedTime.IsZero() || ts.Timestamp.Before(res.IntegratedTime) {
				res.IntegratedTime = ts.Timestamp.UTC()
			}
		case "TimestampAuthority":
			res.SignedTimestamps = append(res.SignedTimestamps, ts.Timestamp.UTC())
		}
	}
	if useTlog {
		res.Tlog = verifiedEntries(b, tm)
	}
	return res
}

// verifiedEntries re-checks each log entry on its own, because
// sigstore-go verifies a threshold and silently skips entries its trusted
// root cannot check; we report only entries that verified.
func verifiedEntries(b *bundle.Bundle, tm root.TrustedMaterial) []TlogEntry {
	entries, err := b.TlogEntries()
	if err != nil {
		return nil
	}
	var out []TlogEntry
	for _, e := range entries {
		one := singleEntry{SignedEntity: b, entry: e}
		ts, err := verify.VerifyTlogEntry(one, tm, 1, e.HasInclusionPromise())
		if err != nil {
			continue
		}
		te := TlogEntry{LogIndex: e.LogIndex(), LogID: hex.EncodeToString([]byte(e.LogKeyID()))}
		if e.HasInclusionPromise() && len(ts) > 0 {
			te.IntegratedTime = e.IntegratedTime().UTC()
		}
		if kv := e.TransparencyLogEntry().GetKindVersion(); kv != nil {
			te.Kind, te.Version = kv.GetKind(), kv.GetVersion()
		}
		out = append(out, te)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].LogIndex < out[j].LogIndex })
	return out
}

type singleEntry struct {
	verify.SignedEntity
	entry *tlog.Entry
}

func (s singleEntry) TlogEntries() ([]*tlog.Entry, error) { return []*tlog.Entry{s.entry}, nil }

// SignerPolicy is the serialisable form of a group's signer
// configuration, for hub and auditor config files.
type SignerPolicy struct {
	Identities []Identity `json:"identities,omitempty"`
	// PublicKeys are PEM "PUBLIC KEY" blocks.
	PublicKeys []string `json:"public_keys,omitempty"`
	// KeyOnlyWithoutTlogUnsafe maps to WithoutTlogUnsafe: for key-signed
	// groups on fleets without internet (cosign --tlog-upload=false).
	KeyOnlyWithoutTlogUnsafe bool `json:"key_only_without_tlog_unsafe,omitempty"`
}

// Options converts the policy to Verifier options.
func (p SignerPolicy) Options() ([]Option, error) {
	var opts []Option
	for _, id := range p.Identities {
		opts = append(opts, WithIdentity(id))
	}
	for _, k := range p.PublicKeys {
		opts = append(opts, WithPublicKeyPEM([]byte(k)))
	}
	if p.KeyOnlyWithoutTlogUnsafe {
		if len(p.Identities) > 0 {
			return nil, fmt.Errorf("%w: key_only_without_tlog_unsafe with identities: the group would not be key-only", ErrConfig)
		}
		opts = append(opts, WithoutTlogUnsafe())
	}
	return opts, nil
}

// NewFromPolicy is New(trusted, p.Options()...).
func NewFromPolicy(trusted root.TrustedMaterial, p SignerPolicy) (*Verifier, error) {
	opts, err := p.Options()
	if err != nil {
		return nil, err
	}
	return New(trusted, opts...)
}

// ParseSignerPolicy reads a SignerPolicy from JSON, refusing unknown
// fields so a typo such as "identites" cannot silently empty the list.
func ParseSignerPolicy(b []byte) (SignerPolicy, error) {
	var p SignerPolicy
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return SignerPolicy{}, fmt.Errorf("%w: signer policy: %w", ErrConfig, err)
	}
	return p, nil
}
