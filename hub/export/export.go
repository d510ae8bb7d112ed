package export

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/veraison/go-cose"

	"github.com/ratatouille/rat/evidence/bundle"
	"github.com/ratatouille/rat/evidence/claims"
	"github.com/ratatouille/rat/evidence/protocol"
	"github.com/ratatouille/rat/hub/store"
)

// Key is the hub's signing key (ECDSA P-256): it signs AK bindings and
// bundle summaries.
type Key struct {
	priv *ecdsa.PrivateKey
}

// LoadOrCreateKey reads the PEM key at path, creating it (mode 0600) if it
// does not exist.
func LoadOrCreateKey(path string) (*Key, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, fmt.Errorf("export: write hub key: %w", err)
		}
		return &Key{priv: k}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("export: hub key: %w", err)
	}
	fi, err := os.Stat(path)
	if err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("export: hub key %s is readable by others (mode %v)", path, fi.Mode().Perm())
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("export: hub key %s: no PEM block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("export: hub key %s: %w", path, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, fmt.Errorf("export: hub key %s is not ECDSA P-256", path)
	}
	return &Key{priv: ek}, nil
}

// Signer is a COSE ES256 signer with the key.
func (k *Key) Signer() (cose.Signer, error) { return cose.NewSigner(cose.AlgorithmES256, k.priv) }

// Public is the key's public half.
func (k *Key) Public() crypto.PublicKey { return &k.priv.PublicKey }

// PublicDER is the public key as SPKI DER.
func (k *Key) PublicDER() []byte {
	der, _ := x509.MarshalPKIXPublicKey(&k.priv.PublicKey)
	return der
}

// PublicPEM is the public key as PEM, for auditors to pin.
func (k *Key) PublicPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: k.PublicDER()})
}

// Bind signs the statement that AK ak was bound to EK ek by credential
// activation at t (the verifier calls it at enrollment).
func (k *Key) Bind(hub, device string, ak, ek []byte, t time.Time) ([]byte, error) {
	s, err := k.Signer()
	if err != nil {
		return nil, err
	}
	return bundle.SignBinding(s, &bundle.Binding{AKPublic: ak, EKPublic: ek, Method: bundle.BindingMethod, Time: t.Unix(), Hub: hub, Device: device})
}

// Options selects what to export.
type Options struct {
	// From and To bound the span (zero: unbounded) by the records' device
	// time; the span is widened to whole boots.
	From, To time.Time
	Hub      string // the exporting hub's name (the EAT issuer)
	Key      *Key   // signs the summary; nil leaves the bundle unsigned
	// TrustedRoot is the Sigstore trusted root policies were checked
	// against (JSON), if any.
	TrustedRoot []byte
	Now         time.Time
	// Records is the form records are written in: "compact" (the
	// default, bundle.MediaRecordCompact), or "delta" and "full" for
	// auditors whose rat-audit predates compact or delta records.
	Records string
}

// RecordOption returns the bundle encoder option for a Records value.
func RecordOption(form string) (bundle.EncodeOption, error) {
	switch form {
	case "", "compact":
		return nil, nil
	case "delta":
		return bundle.WithDeltaRecords(), nil
	case "full":
		return bundle.WithFullRecords(), nil
	}
	return nil, fmt.Errorf("record form %q: want compact, delta or full", form)
}

// Write exports device key's evidence to w.
func Write(w io.Writer, st store.Store, key string, o Options) error {
	d, err := st.Device(key)
	if err != nil {
		return fmt.Errorf("export: device %s: %w", key, err)
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	// Pass 1: find the first record of the boot in which the span starts
	// and the last record in the span.
	var first, last uint64
	var bootStart uint64
	var bootID string
	err = st.Evidence(key, 0, ^uint64(0), func(seq uint64, raw []byte) error {
		var e protocol.Evidence
		if err := protocol.Unmarshal(raw, &e); err != nil {
			return fmt.Errorf("record %d: %w", seq, err)
		}
		if e.Quoted() {
			if c, err := claims.Unmarshal(e.Claims); err == nil && c.BootID != bootID {
				bootID, bootStart = c.BootID, seq
				// chunks before this quoted record belong to its boot too
				if e.IMAStart == 0 && len(e.IMA) == 0 {
					bootStart = seq
				}
			}
		} else if e.IMAStart == 0 && bootStart != seq {
			bootStart = seq // a new boot's first chunk
		}
		t := time.Unix(e.Time, 0)
		inSpan := (o.From.IsZero() || !t.Before(o.From)) && (o.To.IsZero() || !t.After(o.To))
		if inSpan {
			if first == 0 {
				first = bootStart
			}
			last = seq
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if first == 0 {
		return fmt.Errorf("export: device %s has no evidence in the span", key)
	}
	tok, err := bundle.NewToken(claims.UEID(d.EKPublic), o.Hub, d.ID, o.Now)
	if err != nil {
		return err
	}
	if !o.From.IsZero() {
		tok.SpanFrom = o.From.Unix()
	}
	if !o.To.IsZero() {
		tok.SpanTo = o.To.Unix()
	}
	h := &bundle.Header{Token: tok, EKPublic: d.EKPublic, EKCerts: d.EKCerts, AKPublic: d.AKPublic, Binding: d.Binding, TrustedRoot: o.TrustedRoot}
	var opts []bundle.EncodeOption
	if ro, err := RecordOption(o.Records); err != nil {
		return err
	} else if ro != nil {
		opts = append(opts, ro)
	}
	if o.Key != nil {
		h.HubKey = o.Key.PublicDER()
		s, err := o.Key.Signer()
		if err != nil {
			return err
		}
		opts = append(opts, bundle.WithSigner(s))
	}
	enc, err := bundle.NewEncoder(w, h, opts...)
	if err != nil {
		return err
	}
	docs := map[string]*store.Policy{}
	if ps, err := st.Policies(d.Group); err == nil {
		for i := range ps {
			if ps[i].Status != "rejected" {
				docs[ps[i].Digest] = &ps[i]
			}
		}
	}
	uses := d.PolicyUses
	// The policy in force at the first exported record, then each change.
	next := 0
	for next+1 < len(uses) && uses[next+1].FromSeq <= first {
		next++
	}
	err = st.Evidence(key, first, last, func(seq uint64, raw []byte) error {
		for next < len(uses) && uses[next].FromSeq <= seq {
			u := uses[next]
			next++
			p := docs[u.Digest]
			if p == nil {
				return fmt.Errorf("policy %s in force from record %d is not stored", u.Digest, u.FromSeq)
			}
			if err := enc.WritePolicy(&bundle.Policy{Name: p.Name, Since: u.Since.Unix(), FromSeq: seq, Document: p.JSON, SigstoreBundle: p.Bundle}); err != nil {
				return err
			}
		}
		return enc.WriteEncodedRecord(raw)
	})
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return enc.Close()
}
