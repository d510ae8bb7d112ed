package quote

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/subtle"
	"math/big"

	// Hashes a TPM signing scheme may name.
	_ "crypto/sha1"
	_ "crypto/sha256"
	_ "crypto/sha512"

	"github.com/ratatouille/rat/evidence/failure"
)

// PCRValues maps a bank (TPM hash algorithm id) to PCR index to value.
type PCRValues map[uint16]map[int][]byte

type options struct {
	nonce    []byte
	required map[uint16][]int
	prev     *ClockInfo
}

// Option configures Verify.
type Option func(*options)

// WithNonce sets the qualifying data the verifier sent. Without it,
// Verify fails: a quote without a fresh nonce proves nothing about now.
func WithNonce(n []byte) Option { return func(o *options) { o.nonce = append([]byte(nil), n...) } }

// WithRequiredPCRs makes Verify fail unless the quote selects every
// listed PCR of bank: a quote that leaves out PCR 10 says nothing about IMA.
func WithRequiredPCRs(bank uint16, pcrs ...int) Option {
	return func(o *options) {
		if o.required == nil {
			o.required = map[uint16][]int{}
		}
		o.required[bank] = append(o.required[bank], pcrs...)
	}
}

// WithPrevious gives the clock state of the last accepted quote of the
// same AK, so that a replayed older quote is refused.
func WithPrevious(c ClockInfo) Option { return func(o *options) { o.prev = &c } }

// Result is what a verified quote proves.
type Result struct {
	Attest *Attest
	// Rebooted reports that resetCount grew since the previous quote (a
	// TPM reset, i.e. a reboot); Restarted that restartCount grew.
	Rebooted, Restarted bool
}

func hashOf(alg uint16) (crypto.Hash, bool) {
	switch alg {
	case AlgSHA1:
		return crypto.SHA1, true
	case AlgSHA256:
		return crypto.SHA256, true
	case AlgSHA384:
		return crypto.SHA384, true
	case AlgSHA512:
		return crypto.SHA512, true
	}
	return 0, false
}

// Verify checks a quote, in this order, each failure a distinct
// failure id: the signature scheme fits the AK; the signature is valid
// over the TPMS_ATTEST bytes (before anything in them is believed); magic
// is TPM_GENERATED (so the TPM, not a caller of TPM2_Sign, made it); type is
// ATTEST_QUOTE; extraData is the nonce; the selection covers the required
// PCRs; pcrDigest is the hash of the presented PCR values; the clock has
// not gone backwards.
func Verify(ak crypto.PublicKey, attestBytes, sigBytes []byte, pcrs PCRValues, opts ...Option) (*Result, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	sig, err := DecodeSignature(sigBytes)
	if err != nil {
		return nil, failure.New(failure.QuoteMalformed, "%v", err)
	}
	h, ok := hashOf(sig.Hash)
	if !ok {
		return nil, failure.New(failure.QuoteInvalidScheme, "signature hash algorithm 0x%04x is not supported", sig.Hash)
	}
	dh := h.New()
	dh.Write(attestBytes)
	digest := dh.Sum(nil)
	switch k := ak.(type) {
	case *ecdsa.PublicKey:
		if sig.Alg != AlgECDSA {
			return nil, failure.New(failure.QuoteInvalidScheme, "AK is ECC but the signature algorithm is 0x%04x", sig.Alg)
		}
		if !ecdsa.Verify(k, digest, new(big.Int).SetBytes(sig.R), new(big.Int).SetBytes(sig.S)) {
			return nil, failure.New(failure.QuoteInvalidSignature, "ECDSA signature does not verify over TPMS_ATTEST with the AK")
		}
	case *rsa.PublicKey:
		switch sig.Alg {
		case AlgRSASSA:
			err = rsa.VerifyPKCS1v15(k, h, digest, sig.RSA)
		case AlgRSAPSS:
			err = rsa.VerifyPSS(k, h, digest, sig.RSA, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
		default:
			return nil, failure.New(failure.QuoteInvalidScheme, "AK is RSA but the signature algorithm is 0x%04x", sig.Alg)
		}
		if err != nil {
			return nil, failure.New(failure.QuoteInvalidSignature, "RSA signature does not verify over TPMS_ATTEST with the AK: %v", err)
		}
	default:
		return nil, failure.New(failure.QuoteInvalidScheme, "unsupported AK key type %T", ak)
	}

	a, err := DecodeAttest(attestBytes)
	if err != nil {
		return nil, failure.New(failure.QuoteMalformed, "%v", err)
	}
	if a.Magic != GeneratedValue {
		return nil, failure.New(failure.QuoteNotGenerated, "magic 0x%08x is not TPM_GENERATED", a.Magic)
	}
	if a.Type != TagAttestQuote {
		return nil, failure.New(failure.QuoteWrongType, "attestation type 0x%04x is not ATTEST_QUOTE", a.Type)
	}
	if len(o.nonce) == 0 {
		return nil, failure.New(failure.QuoteNonceMismatch, "no expected nonce given to the verifier")
	}
	if subtle.ConstantTimeCompare(a.ExtraData, o.nonce) != 1 {
		return nil, failure.New(failure.QuoteNonceMismatch, "extraData does not equal the verifier's nonce")
	}
	selected := map[uint16]map[int]bool{}
	for _, s := range a.PCRSelections {
		if selected[s.Hash] == nil {
			selected[s.Hash] = map[int]bool{}
		}
		for _, p := range s.PCRs {
			selected[s.Hash][p] = true
		}
	}
	for bank, want := range o.required {
		for _, p := range want {
			if !selected[bank][p] {
				return nil, failure.New(failure.QuotePCRSelection, "quote does not select PCR %d of bank 0x%04x", p, bank)
			}
		}
	}
	ph := h.New()
	for _, s := range a.PCRSelections {
		for _, p := range s.PCRs {
			v, ok := pcrs[s.Hash][p]
			if !ok {
				return nil, failure.New(failure.QuotePCRDigest, "PCR %d of bank 0x%04x is quoted but its value was not presented", p, s.Hash)
			}
			ph.Write(v)
		}
	}
	if !bytes.Equal(ph.Sum(nil), a.PCRDigest) {
		return nil, failure.New(failure.QuotePCRDigest, "pcrDigest is not the hash of the presented PCR values")
	}
	res := &Result{Attest: a}
	if p := o.prev; p != nil {
		c := a.ClockInfo
		switch {
		case c.ResetCount < p.ResetCount:
			return nil, failure.New(failure.QuoteClockBackwards, "resetCount went from %d to %d", p.ResetCount, c.ResetCount)
		case c.ResetCount > p.ResetCount:
			res.Rebooted = true
		case c.RestartCount < p.RestartCount:
			return nil, failure.New(failure.QuoteClockBackwards, "restartCount went from %d to %d", p.RestartCount, c.RestartCount)
		case c.RestartCount > p.RestartCount:
			res.Restarted = true
		case c.Clock < p.Clock:
			// Equal is not backwards: the clock counts milliseconds, and
			// a fast TPM (swtpm) makes two quotes within one. Their order
			// is the chain's (seq, prev), not the clock's.
			return nil, failure.New(failure.QuoteClockBackwards, "clock went from %d to %d without a reset or restart", p.Clock, c.Clock)
		}
	}
	return res, nil
}
