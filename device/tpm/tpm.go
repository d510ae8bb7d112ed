package tpm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
	"github.com/google/go-tpm/tpm2/transport/tcp"
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

// akTemplate is a restricted ECDSA P-256 signing key (TCG's AK profile).
var akTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgECC,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true,
		UserWithAuth: true, Restricted: true, SignEncrypt: true, NoDA: true,
	},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
		Scheme: tpm2.TPMTECCScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
		},
		CurveID: tpm2.TPMECCNistP256,
	}),
	Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
}

// AK is a loaded attestation key.
type AK struct {
	tpm    *TPM
	handle tpm2.TPMHandle
	name   tpm2.TPM2BName
	// Public is the AK's public key (*ecdsa.PublicKey, or *rsa.PublicKey
	// for CreateAKWith(AKRSA2048)); PublicArea its TPMT_PUBLIC bytes
	// (whose name the verifier binds to the EK by credential activation).
	Public     crypto.PublicKey
	PublicArea []byte
}

// CreateAK creates the AK as a primary key of the endorsement hierarchy.
// A primary key is re-derived from the hierarchy seed, so the same AK comes
// back after every agent restart without storing anything; and keys of the
// endorsement hierarchy get unobfuscated resetCount/restartCount in quotes,
// which the verifier needs to see reboots.
func (t *TPM) CreateAK() (*AK, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHEndorsement,
		InPublic:      tpm2.New2B(akTemplate),
	}.Execute(t.t)
	if err != nil {
		return nil, fmt.Errorf("tpm: create AK: %w", err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("tpm: AK public area: %w", err)
	}
	pt, err := pub.Unique.ECC()
	if err != nil {
		return nil, fmt.Errorf("tpm: AK public point: %w", err)
	}
	return &AK{
		tpm: t, handle: rsp.ObjectHandle, name: rsp.Name,
		Public:     &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(pt.X.Buffer), Y: new(big.Int).SetBytes(pt.Y.Buffer)},
		PublicArea: tpm2.Marshal(pub),
	}, nil
}

// Close flushes the AK from the TPM.
func (ak *AK) Close() error {
	_, err := tpm2.FlushContext{FlushHandle: ak.handle}.Execute(ak.tpm.t)
	return err
}

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
	sel := tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
		Hash: tpm2.TPMAlgSHA256, PCRSelect: tpm2.PCClientCompatible.PCRs(toUint(sorted)...),
	}}}
	for attempt := 0; ; attempt++ {
		rsp, err := tpm2.Quote{
			SignHandle:     tpm2.AuthHandle{Handle: ak.handle, Name: ak.name, Auth: tpm2.PasswordAuth(nil)},
			QualifyingData: tpm2.TPM2BData{Buffer: nonce},
			InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
			PCRSelect:      sel,
		}.Execute(ak.tpm.t)
		if err != nil {
			return nil, fmt.Errorf("tpm: quote: %w", err)
		}
		vals, err := ak.tpm.ReadPCRs(sorted)
		if err != nil {
			return nil, err
		}
		att, err := rsp.Quoted.Contents()
		if err != nil {
			return nil, fmt.Errorf("tpm: quote contents: %w", err)
		}
		qi, err := att.Attested.Quote()
		if err != nil {
			return nil, fmt.Errorf("tpm: quote info: %w", err)
		}
		h := sha256.New()
		for _, p := range sorted {
			h.Write(vals[p])
		}
		if bytes.Equal(h.Sum(nil), qi.PCRDigest.Buffer) || attempt >= 16 {
			return &Quote{Attest: rsp.Quoted.Bytes(), Signature: tpm2.Marshal(rsp.Signature), PCRs: vals}, nil
		}
	}
}

// ReadPCRs reads pcrs of the sha256 bank (the TPM returns at most 8 per call).
func (t *TPM) ReadPCRs(pcrs []int) (map[int][]byte, error) {
	out := map[int][]byte{}
	for _, p := range pcrs {
		rsp, err := tpm2.PCRRead{PCRSelectionIn: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
			Hash: tpm2.TPMAlgSHA256, PCRSelect: tpm2.PCClientCompatible.PCRs(uint(p)),
		}}}}.Execute(t.t)
		if err != nil {
			return nil, fmt.Errorf("tpm: read PCR %d: %w", p, err)
		}
		if len(rsp.PCRValues.Digests) != 1 {
			return nil, fmt.Errorf("tpm: read PCR %d: the TPM returned %d values", p, len(rsp.PCRValues.Digests))
		}
		out[p] = rsp.PCRValues.Digests[0].Buffer
	}
	return out, nil
}

// Extend extends PCR pcr of the sha256 bank with digest (the simulated IMA
// source does this exactly as the kernel would).
func (t *TPM) Extend(pcr int, digest []byte) error {
	_, err := tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)},
		Digests:   tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{HashAlg: tpm2.TPMAlgSHA256, Digest: digest}}},
	}.Execute(t.t)
	if err != nil {
		return fmt.Errorf("tpm: extend PCR %d: %w", pcr, err)
	}
	return nil
}

func toUint(p []int) []uint {
	out := make([]uint, len(p))
	for i, v := range p {
		out[i] = uint(v)
	}
	return out
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
