package audit

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"

	"github.com/ratatouille/rat/audit/policysig"
)

type options struct {
	ekRoots, ekIntermediates *x509.CertPool
	ekRootsName              string
	trustedRoot              []byte
	trustedMaterial          root.TrustedMaterial
	trustedRootName          string
	identities               []policysig.Identity
	policyKeys               [][]byte
	withoutTlog              bool
	hubKey                   crypto.PublicKey
	waived                   map[string]string
	now                      time.Time
	maxFailures              int
}

// Option configures Verify.
type Option func(*options) error

// WithEKRoots trusts pool as TPM manufacturer roots for the EK
// certificate. Without it the EK certificate is not checked.
func WithEKRoots(pool *x509.CertPool, name string) Option {
	return func(o *options) error { o.ekRoots, o.ekRootsName = pool, name; return nil }
}

// WithEKRootsDir loads every PEM or DER certificate in dir as an EK root
// (self-signed) or intermediate.
func WithEKRootsDir(dir string) Option {
	return func(o *options) error {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("audit: EK roots: %w", err)
		}
		roots, inter := x509.NewCertPool(), x509.NewCertPool()
		n := 0
		for _, e := range ents {
			if e.IsDir() {
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				return fmt.Errorf("audit: EK roots: %w", err)
			}
			for _, c := range parseCerts(b) {
				if c.CheckSignatureFrom(c) == nil {
					roots.AddCert(c)
				} else {
					inter.AddCert(c)
				}
				n++
			}
		}
		if n == 0 {
			return fmt.Errorf("audit: EK roots: no certificates in %s", dir)
		}
		o.ekRoots, o.ekIntermediates, o.ekRootsName = roots, inter, dir
		return nil
	}
}

func parseCerts(b []byte) []*x509.Certificate {
	var out []*x509.Certificate
	if c, err := x509.ParseCertificate(b); err == nil {
		return append(out, c)
	}
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		if c, err := x509.ParseCertificate(blk.Bytes); err == nil {
			out = append(out, c)
		}
	}
}

// WithTrustedRoot sets the Sigstore trusted root (trusted_root.json) that
// policy signatures are checked against. The root inside the bundle is
// never used: it came from the party being audited.
func WithTrustedRoot(json []byte, name string) Option {
	return func(o *options) error { o.trustedRoot, o.trustedRootName = json, name; return nil }
}

// WithTrustedMaterial is WithTrustedRoot for already parsed Sigstore
// trusted material (a private Sigstore, or a test's virtual one).
func WithTrustedMaterial(tm root.TrustedMaterial, name string) Option {
	return func(o *options) error { o.trustedMaterial, o.trustedRootName = tm, name; return nil }
}

// WithIdentity allows a keyless policy signer (OIDC issuer and
// certificate SAN, exact).
func WithIdentity(issuer, san string) Option {
	return func(o *options) error {
		if issuer == "" || san == "" {
			return errors.New("audit: identity needs both issuer and SAN")
		}
		o.identities = append(o.identities, policysig.Identity{Issuer: issuer, SAN: san})
		return nil
	}
}

// WithPolicyKey allows a key-signed policy (PEM public key, cosign.pub).
func WithPolicyKey(pemBytes []byte) Option {
	return func(o *options) error { o.policyKeys = append(o.policyKeys, pemBytes); return nil }
}

// WithoutTlogUnsafe accepts key-signed policy bundles without a
// transparency-log entry (cosign --insecure-ignore-tlog). The report
// lists it as trusted.
func WithoutTlogUnsafe() Option { return func(o *options) error { o.withoutTlog = true; return nil } }

// WithHubKey pins the enrolling/exporting hub's public key, for the AK
// binding statement and the bundle signature. Without it the binding is
// not checked (the key inside the bundle is the audited party's word).
func WithHubKey(pub crypto.PublicKey) Option {
	return func(o *options) error { o.hubKey = pub; return nil }
}

// WithHubKeyPEM is WithHubKey for a PEM "PUBLIC KEY".
func WithHubKeyPEM(b []byte) Option {
	return func(o *options) error {
		blk, _ := pem.Decode(b)
		if blk == nil {
			return errors.New("audit: hub key: no PEM block")
		}
		k, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return fmt.Errorf("audit: hub key: %w", err)
		}
		o.hubKey = k
		return nil
	}
}

// Waive makes a check that could not be made count as accepted, with the
// auditor's reason in the trusted list (for example the event log on a
// device whose firmware keeps none). Failed checks cannot be waived.
func Waive(check, reason string) Option {
	return func(o *options) error {
		if !slices.Contains(checkOrder, check) {
			return fmt.Errorf("audit: waive: unknown check %q (checks: %s)", check, strings.Join(checkOrder, ", "))
		}
		if reason == "" {
			return errors.New("audit: waive: a reason is required")
		}
		if o.waived == nil {
			o.waived = map[string]string{}
		}
		o.waived[check] = reason
		return nil
	}
}

// WithCurrentTime sets the time certificates are checked at (default now).
func WithCurrentTime(t time.Time) Option { return func(o *options) error { o.now = t; return nil } }

// WithMaxFailures bounds the failures listed in the report (default
// 1000); the rest are counted.
func WithMaxFailures(n int) Option { return func(o *options) error { o.maxFailures = n; return nil } }
