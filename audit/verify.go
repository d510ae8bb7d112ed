package audit

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/veraison/eat"
	"io"
	"math/big"
	"strconv"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/ratatouille/rat/evidence/bundle"
	"github.com/ratatouille/rat/evidence/claims"
	"github.com/ratatouille/rat/evidence/credential"
	"github.com/ratatouille/rat/evidence/ekcert"
	"github.com/ratatouille/rat/evidence/failure"
	"github.com/ratatouille/rat/evidence/ima"
	"github.com/ratatouille/rat/evidence/protocol"
	"github.com/ratatouille/rat/evidence/quote"
	"github.com/ratatouille/rat/evidence/runtimepolicy"
)

// ErrUnusable wraps every reason the input is not a bundle that can be
// audited at all (rat-audit exits 2).
var ErrUnusable = errors.New("audit: unusable bundle")

// quotedPCRs are the PCRs every quote must select in the sha256 bank:
// firmware and boot (0–9, which boot_aggregate covers) and IMA (10).
var quotedPCRs = []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}

type checkState struct {
	passes     int
	fails      []string
	notChecked []string
	infos      []string
	passDetail string
}

type auditor struct {
	o       options
	rep     *Report
	checks  map[string]*checkState
	dec     *bundle.Decoder
	hdr     *bundle.Header
	ak      crypto.PublicKey
	akFP    string
	ueid    []byte
	elem    int
	offset  int64
	rec     *protocol.Evidence
	failSet map[string]bool

	// chain state
	haveRecord bool
	lastSeq    uint64
	havePrev   bool
	prevDigest []byte
	prevClock  quote.ClockInfo
	seg        *Segment

	// IMA state of the current boot
	replayer   *ima.Replayer
	base       uint64 // absolute index of the replayer's entry 0
	pending    []ima.Entry
	pendStart  uint64 // absolute index of pending[0]
	pendingNew bool   // pending starts a new log (IMAStart 0 after entries)
	haveLog    bool
	resetCount uint32
	haveBoot   bool
	proofs     []string

	// policies
	policy     *runtimepolicy.Policy
	policyIdx  int
	policyOK   bool
	seenPolicy bool
	// policyFrom is the first sequence number the newest policy says it
	// applies to, checked against the next record.
	policyFrom    uint64
	policyChecked bool
	eventLogs     int
	// firmware event log of the current boot
	eventLog       []byte
	eventLogSeq    uint64
	bootLogChecked bool
	bootFirstSeq   uint64
	imaChecked     int
	verdicts       int
}

func (a *auditor) check(name string) *checkState {
	c := a.checks[name]
	if c == nil {
		c = &checkState{}
		a.checks[name] = c
	}
	return c
}

func (a *auditor) pass(name string) { a.check(name).passes++ }
func (a *auditor) failed(name, format string, args ...any) {
	c := a.check(name)
	c.fails = append(c.fails, fmt.Sprintf(format, args...))
}
func (a *auditor) unchecked(name, format string, args ...any) {
	c := a.check(name)
	c.notChecked = append(c.notChecked, fmt.Sprintf(format, args...))
}
func (a *auditor) info(name, format string, args ...any) {
	c := a.check(name)
	c.infos = append(c.infos, fmt.Sprintf(format, args...))
}

// addFailure records ev at the current element.
func (a *auditor) addFailure(ev failure.Event) {
	f := Failure{Event: ev, Element: a.elem, Offset: a.offset}
	if a.rec != nil {
		f.Seq, f.Time = a.rec.Seq, a.rec.Time
		if f.Fields == nil {
			f.Fields = map[string]string{}
		}
		f.Fields["seq"] = strconv.FormatUint(a.rec.Seq, 10)
		if a.rec.Time != 0 {
			f.Fields["time"] = unix(a.rec.Time)
		}
	}
	if len(a.rep.Failures) >= a.o.maxFailures {
		a.rep.FailuresOmitted++
		return
	}
	a.rep.Failures = append(a.rep.Failures, f)
}

func (a *auditor) failEvent(name string, err error) {
	var fe *failure.Error
	ev := failure.Event{ID: failure.EvidenceMalformed, Severity: failure.Critical, Context: err.Error()}
	if errors.As(err, &fe) {
		ev = fe.Event
	}
	a.failed(name, "%s", ev.String())
	a.addFailure(ev)
}

// Verify audits the bundle read from r. It returns an error wrapping
// ErrUnusable when r is not a decodable bundle; everything else, including
// any tampering the format cannot catch, is a failed check in the report.
func Verify(r io.Reader, opts ...Option) (*Report, error) {
	a := &auditor{o: options{maxFailures: 1000}, rep: &Report{}, checks: map[string]*checkState{}, failSet: map[string]bool{}}
	for _, opt := range opts {
		if err := opt(&a.o); err != nil {
			return nil, err
		}
	}
	if a.o.now.IsZero() {
		a.o.now = time.Now()
	}
	d, err := bundle.NewDecoder(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnusable, err)
	}
	a.dec, a.hdr = d, d.Header()
	if err := a.identity(); err != nil {
		return nil, err
	}
	for {
		item, err := d.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnusable, err)
		}
		a.elem, a.offset, a.rec = d.Index(), d.Offset(), nil
		switch v := item.(type) {
		case *bundle.Policy:
			a.policyElement(v)
		case *protocol.Evidence:
			a.rec = v
			a.record(v)
		case *bundle.Verdict:
			a.verdicts++
		}
	}
	a.rec = nil
	a.finish()
	return a.rep, nil
}

// identity checks the header: UEID from the EK, EK certificate, AK key and
// attributes, the hub's binding statement.
func (a *auditor) identity() error {
	h := a.hdr
	a.rep.Device.Subject, a.rep.Device.Issuer = h.Token.Subject, h.Token.Issuer
	a.rep.SelfIssued = h.Token.SelfIssued
	a.ueid = claims.UEID(h.EKPublic)
	a.rep.Device.UEID = hex.EncodeToString(a.ueid)
	// The EAT's own claims are re-read with veraison/eat's types: the UEID's
	// form and the profile URI, as the field's library understands them.
	eatOK := eat.UEID(h.Token.UEID).Validate() == nil
	if p, err := eat.NewProfile(h.Token.Profile); err != nil || !p.IsURI() {
		eatOK = false
	}
	if eatOK && subtle.ConstantTimeCompare(a.ueid, h.Token.UEID) == 1 {
		a.pass(CheckUEID)
	} else {
		a.failed(CheckUEID, "the EAT's UEID %x is not the one derived from the EK public key (%x)", []byte(h.Token.UEID), a.ueid)
		a.addFailure(failure.Event{ID: failure.EvidenceMalformed, Severity: failure.Critical, Context: "EAT UEID does not match the EK"})
	}

	akPub, err := tpm2.Unmarshal[tpm2.TPMTPublic](h.AKPublic)
	if err != nil {
		return fmt.Errorf("%w: AK public area: %v", ErrUnusable, err)
	}
	a.ak, err = publicKey(akPub)
	if err != nil {
		return fmt.Errorf("%w: AK public key: %v", ErrUnusable, err)
	}
	der, _ := x509.MarshalPKIXPublicKey(a.ak)
	fp := sha256.Sum256(der)
	a.akFP = "sha256:" + hex.EncodeToString(fp[:8])
	a.rep.Device.AK = a.akFP
	if len(h.IAKCert) > 0 || len(h.IDevIDCert) > 0 {
		a.info(CheckEKCert, "IAK/IDevID certificates carried, not verified")
	}
	if err := credential.CheckAKAttributes(akPub); err != nil {
		a.failed(CheckAKAttributes, "%v", err)
		a.addFailure(failure.Event{ID: failure.CredentialActivation, Severity: failure.Critical, Context: err.Error()})
	} else {
		a.pass(CheckAKAttributes)
		a.check(CheckAKAttributes).passDetail = "restricted signing key, fixedTPM, fixedParent, generated in the TPM"
	}

	ekPub, ekErr := tpm2.Unmarshal[tpm2.TPMTPublic](h.EKPublic)
	var ekKey crypto.PublicKey
	if ekErr == nil {
		ekKey, ekErr = publicKey(ekPub)
	}
	switch {
	case ekErr != nil:
		a.failed(CheckEKCert, "EK public area: %v", ekErr)
	case len(h.EKCerts) == 0:
		a.unchecked(CheckEKCert, "the bundle carries no EK certificate")
	case a.o.ekRoots == nil:
		a.unchecked(CheckEKCert, "no EK roots given (--ek-roots)")
	default:
		inter := x509.NewCertPool()
		if a.o.ekIntermediates != nil {
			inter = a.o.ekIntermediates.Clone()
		}
		for _, c := range h.EKCerts[1:] {
			if cert, err := x509.ParseCertificate(c); err == nil {
				inter.AddCert(cert)
			}
		}
		cert, err := ekcert.Verify(h.EKCerts[0], ekKey, a.o.ekRoots, inter, a.o.now)
		if err != nil {
			a.failEvent(CheckEKCert, err)
		} else {
			a.pass(CheckEKCert)
			a.rep.Device.EKCert = ekcert.Describe(cert)
			a.check(CheckEKCert).passDetail = fmt.Sprintf("EK certificate %q chains to a root in %s and certifies the EK", cert.Subject.String(), a.o.ekRootsName)
		}
	}

	switch {
	case len(h.Binding) == 0:
		a.unchecked(CheckAKBinding, "the bundle carries no AK binding statement")
	case a.o.hubKey == nil:
		a.unchecked(CheckAKBinding, "no hub key pinned (--hub-key): the bundle's own hub key is the audited party's word")
	default:
		b, err := bundle.VerifyBinding(h.Binding, a.o.hubKey)
		switch {
		case err != nil:
			a.failed(CheckAKBinding, "%v", err)
			a.addFailure(failure.Event{ID: failure.CredentialActivation, Severity: failure.Critical, Context: err.Error()})
		case !bytes.Equal(b.AKPublic, h.AKPublic) || !bytes.Equal(b.EKPublic, h.EKPublic):
			a.failed(CheckAKBinding, "the binding statement names another AK or EK than the bundle")
			a.addFailure(failure.Event{ID: failure.CredentialActivation, Severity: failure.Critical, Context: "binding names another AK or EK"})
		case b.Method != bundle.BindingMethod:
			a.failed(CheckAKBinding, "binding method %q is not %q", b.Method, bundle.BindingMethod)
		default:
			a.pass(CheckAKBinding)
			a.check(CheckAKBinding).passDetail = fmt.Sprintf("signed by the pinned hub key: AK bound to EK by credential activation at %s", unix(b.Time))
			a.rep.Trusted = append(a.rep.Trusted, fmt.Sprintf("the hub (pinned key %s) that states AK %s was bound to this EK by credential activation at %s", keyFP(a.o.hubKey), a.akFP, unix(b.Time)))
		}
	}
	return nil
}

func keyFP(k crypto.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return "?"
	}
	s := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(s[:8])
}

// publicKey converts a TPMT_PUBLIC to a Go key: ECDSA for ECC keys (go-tpm
// returns ECDH keys, which cannot verify), RSA for RSA keys.
func publicKey(p *tpm2.TPMTPublic) (crypto.PublicKey, error) {
	switch p.Type {
	case tpm2.TPMAlgECC:
		parms, err := p.Parameters.ECCDetail()
		if err != nil {
			return nil, err
		}
		pt, err := p.Unique.ECC()
		if err != nil {
			return nil, err
		}
		var curve elliptic.Curve
		switch parms.CurveID {
		case tpm2.TPMECCNistP256:
			curve = elliptic.P256()
		case tpm2.TPMECCNistP384:
			curve = elliptic.P384()
		default:
			return nil, fmt.Errorf("unsupported curve 0x%04x", parms.CurveID)
		}
		k := &ecdsa.PublicKey{Curve: curve, X: new(big.Int).SetBytes(pt.X.Buffer), Y: new(big.Int).SetBytes(pt.Y.Buffer)}
		if _, err := k.ECDH(); err != nil {
			return nil, fmt.Errorf("ECC point: %w", err)
		}
		return k, nil
	case tpm2.TPMAlgRSA:
		parms, err := p.Parameters.RSADetail()
		if err != nil {
			return nil, err
		}
		n, err := p.Unique.RSA()
		if err != nil {
			return nil, err
		}
		return tpm2.RSAPub(parms, n)
	}
	return nil, fmt.Errorf("unsupported key type 0x%04x", p.Type)
}

func unix(t int64) string {
	if t == 0 {
		return "unknown"
	}
	return time.Unix(t, 0).UTC().Format(time.RFC3339)
}

// AKPublicKey returns the Go public key of a TPMT_PUBLIC (for tools that
// hand the AK to other verifiers, such as rat-audit export-open).
func AKPublicKey(tpmtPublic []byte) (crypto.PublicKey, error) {
	p, err := tpm2.Unmarshal[tpm2.TPMTPublic](tpmtPublic)
	if err != nil {
		return nil, fmt.Errorf("audit: public area: %w", err)
	}
	return publicKey(p)
}
