package tpm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
	"github.com/google/go-tpm/tpm2/transport/tcp"

	"github.com/ratatouille/rat/evidence/quote"
)

// TPM is an open TPM.
type TPM struct {
	t transport.TPMCloser
}

// Open opens the TPM named by addr: "" (try /dev/tpmrm0, then /dev/tpm0),
// a device path, or "tcp://host:port" for an MS-simulator endpoint (the
// platform port is port+1, as swtpm and the reference simulator use).
func Open(addr string) (*TPM, error) {
	switch {
	case addr == "":
		var errs []error
		for _, p := range []string{"/dev/tpmrm0", "/dev/tpm0"} {
			t, err := linuxtpm.Open(p)
			if err == nil {
				return &TPM{t: locked(t)}, nil
			}
			errs = append(errs, err)
		}
		return nil, fmt.Errorf("tpm: no TPM device: %w", errors.Join(errs...))
	case strings.HasPrefix(addr, "tcp://"):
		hostport := strings.TrimPrefix(addr, "tcp://")
		host, port, err := net.SplitHostPort(hostport)
		if err != nil {
			return nil, fmt.Errorf("tpm: address %q: %w", addr, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p <= 0 || p >= 65535 {
			return nil, fmt.Errorf("tpm: address %q: bad port", addr)
		}
		t, err := tcp.Open(tcp.Config{CommandAddress: hostport, PlatformAddress: net.JoinHostPort(host, strconv.Itoa(p+1))})
		if err != nil {
			return nil, fmt.Errorf("tpm: open %s: %w", addr, err)
		}
		return &TPM{t: locked(t)}, nil
	default:
		t, err := linuxtpm.Open(addr)
		if err != nil {
			return nil, fmt.Errorf("tpm: open %s: %w", addr, err)
		}
		return &TPM{t: locked(t)}, nil
	}
}

// Close closes the connection.
func (t *TPM) Close() error { return t.t.Close() }

// Object attributes (TPMA_OBJECT) of the templates.
const (
	attrFixedTPM            uint32 = 1 << 1
	attrFixedParent         uint32 = 1 << 4
	attrSensitiveDataOrigin uint32 = 1 << 5
	attrUserWithAuth        uint32 = 1 << 6
	attrAdminWithPolicy     uint32 = 1 << 7
	attrNoDA                uint32 = 1 << 10
	attrRestricted          uint32 = 1 << 16
	attrDecrypt             uint32 = 1 << 17
	attrSign                uint32 = 1 << 18

	// akAttrs is TCG's AK profile: a restricted signing key that never
	// leaves this TPM.
	akAttrs = attrFixedTPM | attrFixedParent | attrSensitiveDataOrigin | attrUserWithAuth | attrRestricted | attrSign | attrNoDA
)

// akTemplate is a restricted ECDSA P-256 signing key with SHA-256 (TCG's
// AK profile): TPMT_PUBLIC with an empty auth policy, no symmetric
// algorithm, no KDF and an empty unique point. The bytes must never change:
// the AK is a primary key, re-derived from the endorsement seed and this
// template at every start, and the hub knows it by its name.
func akTemplate() []byte {
	o := &out{}
	o.u16(algECC)
	o.u16(algSHA256)
	o.u32(akAttrs)
	o.tpm2b(nil)
	o.u16(algNull)   // symmetric
	o.u16(algECDSA)  // scheme
	o.u16(algSHA256) // its hash
	o.u16(eccNistP256)
	o.u16(algNull) // kdf
	o.tpm2b(nil)   // unique x
	o.tpm2b(nil)   // unique y
	return o.b
}

// AK is a loaded attestation key.
type AK struct {
	tpm    *TPM
	handle uint32
	name   []byte
	// Public is the AK's public key (*ecdsa.PublicKey, or *rsa.PublicKey
	// for CreateAKWith(AKRSA2048)); PublicArea its TPMT_PUBLIC bytes
	// (whose name the verifier binds to the EK by credential activation).
	Public     crypto.PublicKey
	PublicArea []byte
}

// createKey creates a primary key of the endorsement hierarchy and checks
// that the name the TPM returned is the SHA-256 name of the public area
// it returned (the verifier computes the name from the public area).
func (t *TPM) createKey(what string, template []byte) (uint32, []byte, []byte, *public, error) {
	h, area, name, err := t.createPrimary(rhEndorsement, template)
	if err != nil {
		return 0, nil, nil, nil, fmt.Errorf("tpm: create %s: %w", what, err)
	}
	pub, err := parsePublic(area)
	if err == nil && pub.nameAlg != algSHA256 {
		err = fmt.Errorf("name algorithm 0x%04x", pub.nameAlg)
	}
	if err == nil {
		d := sha256.Sum256(area)
		if !bytes.Equal(name, append(binary.BigEndian.AppendUint16(nil, algSHA256), d[:]...)) {
			err = errors.New("the TPM's name for it is not the name of its public area")
		}
	}
	if err != nil {
		_ = t.flush(h)
		return 0, nil, nil, nil, fmt.Errorf("tpm: %s public area: %w", what, err)
	}
	return h, area, name, pub, nil
}

// CreateAK creates the AK as a primary key of the endorsement hierarchy.
// A primary key is re-derived from the hierarchy seed, so the same AK comes
// back after every agent restart without storing anything; and keys of the
// endorsement hierarchy get unobfuscated resetCount/restartCount in quotes,
// which the verifier needs to see reboots.
func (t *TPM) CreateAK() (*AK, error) {
	h, area, name, pub, err := t.createKey("AK", akTemplate())
	if err != nil {
		return nil, err
	}
	if pub.typ != algECC || pub.eccCurve != eccNistP256 || len(pub.eccX) == 0 || len(pub.eccY) == 0 {
		_ = t.flush(h)
		return nil, errors.New("tpm: AK public area: not an ECC P-256 point")
	}
	return &AK{
		tpm: t, handle: h, name: name,
		Public:     &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(pub.eccX), Y: new(big.Int).SetBytes(pub.eccY)},
		PublicArea: area,
	}, nil
}

// Close flushes the AK from the TPM.
func (ak *AK) Close() error { return ak.tpm.flush(ak.handle) }

// Quote is what the TPM returned: the TPMS_ATTEST and TPMT_SIGNATURE bytes
// exactly as the TPM produced them, and the sha256 PCR values read next to
// the quote.
type Quote struct {
	Attest, Signature []byte
	PCRs              map[int][]byte
}

// Quote quotes pcrs of the sha256 bank with nonce as qualifying data.
//
// The PCR values are read after the quote, in separate commands; if a PCR
// was extended in between (the kernel's IMA does so at any time), the values
// would not hash to the quote's pcrDigest and the verifier would rightly
// refuse them. So the values are checked against the digest here, and the
// quote is taken again until they agree.
func (ak *AK) Quote(nonce []byte, pcrs []int) (*Quote, error) {
	sorted := append([]int(nil), pcrs...)
	sort.Ints(sorted)
	p := &out{}
	p.tpm2b(nonce)
	p.u16(algNull) // inScheme: the key's own
	p.pcrSelection(sorted)
	for attempt := 0; ; attempt++ {
		_, r, err := ak.tpm.run(ccQuote, []uint32{ak.handle}, []session{password}, p, 0)
		if err != nil {
			return nil, fmt.Errorf("tpm: quote: %w", err)
		}
		attest := r.tpm2b()
		sig := r.take(len(r.b) - r.off) // TPMT_SIGNATURE, the rest
		if r.err != nil {
			return nil, fmt.Errorf("tpm: quote response: %w", r.err)
		}
		if _, err := quote.DecodeSignature(sig); err != nil {
			return nil, fmt.Errorf("tpm: quote response: %w", err)
		}
		att, err := quote.DecodeAttest(attest)
		if err != nil {
			return nil, fmt.Errorf("tpm: quote contents: %w", err)
		}
		if att.Type != quote.TagAttestQuote {
			return nil, fmt.Errorf("tpm: quote contents: TPMS_ATTEST of type 0x%04x", att.Type)
		}
		vals, err := ak.tpm.ReadPCRs(sorted)
		if err != nil {
			return nil, err
		}
		h := sha256.New()
		for _, p := range sorted {
			h.Write(vals[p])
		}
		if bytes.Equal(h.Sum(nil), att.PCRDigest) || attempt >= 16 {
			return &Quote{Attest: attest, Signature: sig, PCRs: vals}, nil
		}
	}
}

// ReadPCRs reads pcrs of the sha256 bank (the TPM returns at most 8 per call).
func (t *TPM) ReadPCRs(pcrs []int) (map[int][]byte, error) {
	out := map[int][]byte{}
	for _, pcr := range pcrs {
		v, err := t.readPCR(pcr)
		if err != nil {
			return nil, fmt.Errorf("tpm: read PCR %d: %w", pcr, err)
		}
		out[pcr] = v
	}
	return out, nil
}

func (t *TPM) readPCR(pcr int) ([]byte, error) {
	p := &out{}
	p.pcrSelection([]int{pcr})
	_, r, err := t.run(ccPCRRead, nil, nil, p, 0)
	if err != nil {
		return nil, err
	}
	r.u32() // pcrUpdateCounter
	// pcrSelectionOut
	for n := r.u32(); n > 0 && r.err == nil; n-- {
		r.u16()
		r.take(int(r.u8()))
	}
	n := r.u32()
	if r.err == nil && n != 1 {
		return nil, fmt.Errorf("the TPM returned %d values", n)
	}
	v := r.tpm2b()
	if err := r.done(); err != nil {
		return nil, err
	}
	return v, nil
}

// Extend extends PCR pcr of the sha256 bank with digest (the simulated IMA
// source does this exactly as the kernel would).
func (t *TPM) Extend(pcr int, digest []byte) error {
	if len(digest) != sha256.Size {
		return fmt.Errorf("tpm: extend PCR %d: a %d-byte digest for the sha256 bank", pcr, len(digest))
	}
	p := &out{}
	p.u32(1) // TPML_DIGEST_VALUES
	p.u16(algSHA256)
	p.raw(digest)
	if _, _, err := t.run(ccPCRExtend, []uint32{uint32(pcr)}, []session{password}, p, 0); err != nil {
		return fmt.Errorf("tpm: extend PCR %d: %w", pcr, err)
	}
	return nil
}

// New wraps an already open TPM transport, such as the go-tpm-tools
// simulator's in the root module's simulated device.
func New(t transport.TPMCloser) *TPM { return &TPM{t: locked(t)} }

// lockedTPM serialises commands: the agent's quotes and a simulated IMA's
// extends share one TPM connection, and neither a simulator nor a raw
// /dev/tpm0 may see two commands interleaved.
type lockedTPM struct {
	mu sync.Mutex
	t  transport.TPMCloser
}

func locked(t transport.TPMCloser) transport.TPMCloser { return &lockedTPM{t: t} }

func (l *lockedTPM) Send(cmd []byte) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.t.Send(cmd)
}

func (l *lockedTPM) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.t.Close()
}
