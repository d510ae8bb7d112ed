package main

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/ratatouille/rat/evidence/failure"
	"github.com/ratatouille/rat/evidence/quote"
)

func init() {
	register(command{name: "quote", summary: "TPM2 quotes: verify (the inputs of tpm2_checkquote)", run: func(args []string) int {
		return runQuote(args, os.Stdout, os.Stderr)
	}})
}

const quoteUsage = "usage: rat quote verify --ak AK.pem --quote quote.attest --sig quote.sig --nonce-file N [--pcrs pcrs.json|pcrs.bin] [--pcr-list 0,1,...,10] [--bank sha256] [--json]"

// bankIDs are the banks a pcrs.json may carry, by tpm2-tools name.
var bankIDs = map[string]uint16{"sha1": quote.AlgSHA1, "sha256": quote.AlgSHA256, "sha384": quote.AlgSHA384, "sha512": quote.AlgSHA512}

func bankName(id uint16) string {
	for n, v := range bankIDs {
		if v == id {
			return n
		}
	}
	return fmt.Sprintf("0x%04x", id)
}

var bankSizes = map[uint16]int{quote.AlgSHA1: 20, quote.AlgSHA256: 32, quote.AlgSHA384: 48, quote.AlgSHA512: 64}

// usageError is unusable input (exit 2), as opposed to a quote that fails
// a check (exit 1).
type usageError struct{ error }

func runQuote(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "verify" {
		fmt.Fprintln(stderr, quoteUsage)
		return 2
	}
	fs := flag.NewFlagSet("rat quote verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	akPath := fs.String("ak", "", "AK public key: PEM (as tpm2_createak -f pem writes it) or DER SubjectPublicKeyInfo")
	quotePath := fs.String("quote", "", "TPMS_ATTEST bytes (tpm2_quote -m)")
	sigPath := fs.String("sig", "", "TPMT_SIGNATURE bytes (tpm2_quote -s)")
	noncePath := fs.String("nonce-file", "", "file whose bytes are the expected qualifying data (tpm2_quote -q)")
	pcrsPath := fs.String("pcrs", "", `PCR values: {"sha256": {"0": "<hex>", ...}}, tpm2_quote -o output, or raw values in --pcr-list order`)
	pcrList := fs.String("pcr-list", "0-10", "PCRs the quote must select, e.g. 0,1,2 or 0-10 or sha256:0-10")
	bankFlag := fs.String("bank", "sha256", "bank of --pcr-list (and of raw --pcrs values)")
	asJSON := fs.Bool("json", false, "print the result and the decoded TPMS_ATTEST as JSON")
	pos, err := flagsAnywhere(fs, args[1:])
	if err != nil {
		return 2
	}
	if len(pos) != 0 || *akPath == "" || *quotePath == "" || *sigPath == "" || *noncePath == "" {
		fmt.Fprintln(stderr, quoteUsage)
		return 2
	}
	res, attest, err := verifyQuoteFiles(*akPath, *quotePath, *sigPath, *noncePath, *pcrsPath, *pcrList, *bankFlag)
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintln(stderr, "rat quote verify:", err)
		return 2
	}
	var fe *failure.Error
	if err != nil && !errors.As(err, &fe) {
		fmt.Fprintln(stderr, "rat quote verify:", err)
		return 2
	}
	if *asJSON {
		out := map[string]any{"valid": err == nil}
		if fe != nil {
			out["failure"] = fe.Event
		} else {
			out["pcr_digest_checked"] = res.digestChecked
		}
		if attest != nil {
			out["attest"] = attestJSON(attest)
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
	}
	if fe != nil {
		if !*asJSON {
			fmt.Fprintf(stdout, "quote INVALID: %s\n", fe.Event)
		}
		// A quote whose bytes do not decode is unusable input; any other
		// failed check is a negative verdict.
		if fe.Event.ID == failure.QuoteMalformed {
			return 2
		}
		return 1
	}
	if !*asJSON {
		a := attest
		fmt.Fprintln(stdout, "quote valid: signed by the AK, TPM_GENERATED, ATTEST_QUOTE, extraData = nonce")
		var sel []string
		for _, s := range a.PCRSelections {
			sel = append(sel, bankName(s.Hash)+":"+intList(s.PCRs))
		}
		if res.digestChecked {
			fmt.Fprintf(stdout, "  PCRs %s selected; pcrDigest matches the presented values\n", strings.Join(sel, " "))
		} else {
			fmt.Fprintf(stdout, "  PCRs %s selected; pcrDigest NOT checked (no --pcrs)\n", strings.Join(sel, " "))
		}
		c := a.ClockInfo
		fmt.Fprintf(stdout, "  clock %d ms, resetCount %d, restartCount %d, safe %v, firmware 0x%016x\n", c.Clock, c.ResetCount, c.RestartCount, c.Safe, a.FirmwareVersion)
	}
	return 0
}

type quoteResult struct{ digestChecked bool }

func verifyQuoteFiles(akPath, quotePath, sigPath, noncePath, pcrsPath, pcrList, bankFlag string) (quoteResult, *quote.Attest, error) {
	var res quoteResult
	bank, ok := bankIDs[bankFlag]
	if !ok {
		return res, nil, usageError{fmt.Errorf("unknown bank %q", bankFlag)}
	}
	required, err := parsePCRList(pcrList, &bank)
	if err != nil {
		return res, nil, usageError{err}
	}
	ak, err := readPublicKey(akPath)
	if err != nil {
		return res, nil, usageError{err}
	}
	attestBytes, err := os.ReadFile(quotePath)
	if err != nil {
		return res, nil, usageError{err}
	}
	sig, err := os.ReadFile(sigPath)
	if err != nil {
		return res, nil, usageError{err}
	}
	nonce, err := os.ReadFile(noncePath)
	if err != nil {
		return res, nil, usageError{err}
	}
	if len(nonce) == 0 {
		return res, nil, usageError{fmt.Errorf("%s: empty nonce", noncePath)}
	}
	var pcrs quote.PCRValues
	if pcrsPath != "" {
		b, err := os.ReadFile(pcrsPath)
		if err != nil {
			return res, nil, usageError{err}
		}
		if pcrs, err = parsePCRsFile(b, bank, required); err != nil {
			return res, nil, usageError{fmt.Errorf("%s: %w", pcrsPath, err)}
		}
		res.digestChecked = true
	}
	// Decoded for display only; Verify checks the signature before it
	// believes any of it.
	attest, _ := quote.DecodeAttest(attestBytes)
	opts := []quote.Option{quote.WithNonce(nonce)}
	if len(required) > 0 {
		opts = append(opts, quote.WithRequiredPCRs(bank, required...))
	}
	r, err := quote.Verify(ak, attestBytes, sig, pcrs, opts...)
	if err != nil {
		var fe *failure.Error
		// Without --pcrs every check before pcrDigest has passed when the
		// first failure is the missing values (Verify's documented order),
		// which is what tpm2_checkquote without -f checks.
		if pcrs == nil && errors.As(err, &fe) && fe.Event.ID == failure.QuotePCRDigest && strings.Contains(fe.Event.Context, "not presented") {
			return res, attest, nil
		}
		return res, attest, err
	}
	return res, r.Attest, nil
}

// parsePCRList reads "0,1,2", "0-10" or "sha256:0-10" (which also sets
// the bank, as tpm2-tools' -l does). "" or "none" requires nothing.
func parsePCRList(s string, bank *uint16) ([]int, error) {
	if name, rest, ok := strings.Cut(s, ":"); ok {
		b, known := bankIDs[name]
		if !known {
			return nil, fmt.Errorf("--pcr-list: unknown bank %q", name)
		}
		*bank = b
		s = rest
	}
	if s == "" || s == "none" {
		return nil, nil
	}
	seen := map[int]bool{}
	var out []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(strings.TrimSpace(lo))
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(strings.TrimSpace(hi))
		}
		if err1 != nil || err2 != nil || a < 0 || b > 23 || a > b {
			return nil, fmt.Errorf("--pcr-list: bad PCR %q (PCRs are 0-23)", part)
		}
		for p := a; p <= b; p++ {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	sort.Ints(out)
	return out, nil
}

func readPublicKey(path string) (crypto.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	der := b
	if blk, _ := pem.Decode(b); blk != nil {
		switch blk.Type {
		case "PUBLIC KEY":
			der = blk.Bytes
		case "RSA PUBLIC KEY":
			k, err := x509.ParsePKCS1PublicKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			return k, nil
		default:
			return nil, fmt.Errorf("%s: PEM block %q is not a public key", path, blk.Type)
		}
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("%s: not a PEM or DER public key: %w", path, err)
	}
	return k, nil
}

// parsePCRsFile reads PCR values in any of the forms tpm2_checkquote -f
// accepts, plus our JSON: JSON ({"sha256": {"0": "<hex>"}}); tpm2-tools'
// serialized form (tpm2_quote -o, the default); or bare values in the
// order of required (tpm2_pcrread -o, tpm2_quote -F values).
func parsePCRsFile(b []byte, bank uint16, required []int) (quote.PCRValues, error) {
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '{' {
		return parsePCRsJSON(t)
	}
	if v, err := parseTPM2ToolsPCRs(b); err == nil {
		return v, nil
	}
	size := bankSizes[bank]
	if len(required) == 0 || len(b) != len(required)*size {
		return nil, fmt.Errorf("not JSON, not tpm2-tools serialized PCRs, and %d bytes is not %d %s values (--pcr-list)", len(b), len(required), bankName(bank))
	}
	v := quote.PCRValues{bank: {}}
	for i, p := range required {
		v[bank][p] = b[i*size : (i+1)*size]
	}
	return v, nil
}

// parsePCRsJSON reads {"sha256": {"0": "<hex>", ...}, "sha1": {...}}.
// Keys that are not bank names (such as rat eventlog replay --json's
// "secure_boot") are ignored, so that output is a pcrs.json too.
func parsePCRsJSON(b []byte) (quote.PCRValues, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return nil, fmt.Errorf("pcrs JSON: %w", err)
	}
	out := quote.PCRValues{}
	for name, raw := range top {
		id, ok := bankIDs[name]
		if !ok {
			continue
		}
		var vals map[string]string
		if err := json.Unmarshal(raw, &vals); err != nil {
			return nil, fmt.Errorf("pcrs JSON: bank %s: %w", name, err)
		}
		out[id] = map[int][]byte{}
		for k, h := range vals {
			p, err := strconv.Atoi(k)
			if err != nil || p < 0 || p > 23 {
				return nil, fmt.Errorf("pcrs JSON: bank %s: PCR %q", name, k)
			}
			v, err := hex.DecodeString(strings.TrimPrefix(h, "0x"))
			if err != nil || len(v) != bankSizes[id] {
				return nil, fmt.Errorf("pcrs JSON: bank %s PCR %d: want %d hex bytes", name, p, bankSizes[id])
			}
			out[id][p] = v
		}
	}
	if len(out) == 0 {
		return nil, errors.New("pcrs JSON: no bank (sha1, sha256, sha384, sha512)")
	}
	return out, nil
}

// parseTPM2ToolsPCRs reads the file tpm2_quote -o writes by default: the
// in-memory TPML_PCR_SELECTION (count, 16 TPMS_PCR_SELECTION of 8 bytes
// with padding), a uint32 count of TPML_DIGEST, and that many TPML_DIGEST
// (count, 8 TPM2B_DIGEST of 2+64 bytes), little-endian as on x86 and arm.
// The values follow the selection order: bank by bank, PCRs ascending.
func parseTPM2ToolsPCRs(b []byte) (quote.PCRValues, error) {
	const selSize, listSize = 4 + 16*8, 4 + 8*66
	if len(b) < selSize+4 {
		return nil, errors.New("too short")
	}
	le := binary.LittleEndian
	nsel := le.Uint32(b)
	if nsel == 0 || nsel > 16 {
		return nil, errors.New("bad selection count")
	}
	ndig := le.Uint32(b[selSize:])
	if ndig > 16 || len(b) != selSize+4+int(ndig)*listSize {
		return nil, errors.New("bad size")
	}
	var digests [][]byte
	for i := 0; i < int(ndig); i++ {
		l := b[selSize+4+i*listSize:]
		n := le.Uint32(l)
		if n > 8 {
			return nil, errors.New("bad digest count")
		}
		for j := 0; j < int(n); j++ {
			d := l[4+j*66:]
			sz := int(le.Uint16(d))
			if sz > 64 {
				return nil, errors.New("bad digest size")
			}
			digests = append(digests, d[2:2+sz])
		}
	}
	out := quote.PCRValues{}
	k := 0
	for i := 0; i < int(nsel); i++ {
		s := b[4+i*8:]
		hash, size := le.Uint16(s), int(s[2])
		if size > 4 || bankSizes[hash] == 0 {
			return nil, errors.New("bad selection")
		}
		if out[hash] == nil {
			out[hash] = map[int][]byte{}
		}
		for byteIdx := 0; byteIdx < size; byteIdx++ {
			for bit := 0; bit < 8; bit++ {
				if s[3+byteIdx]&(1<<bit) == 0 {
					continue
				}
				if k >= len(digests) || len(digests[k]) != bankSizes[hash] {
					return nil, errors.New("values do not match the selection")
				}
				out[hash][byteIdx*8+bit] = digests[k]
				k++
			}
		}
	}
	if k != len(digests) {
		return nil, errors.New("more values than selected PCRs")
	}
	return out, nil
}

func intList(p []int) string {
	s := make([]string, len(p))
	for i, v := range p {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

func attestJSON(a *quote.Attest) map[string]any {
	var sel []map[string]any
	for _, s := range a.PCRSelections {
		sel = append(sel, map[string]any{"hash": bankName(s.Hash), "pcrs": s.PCRs})
	}
	return map[string]any{
		"magic":           fmt.Sprintf("0x%08x", a.Magic),
		"type":            fmt.Sprintf("0x%04x", a.Type),
		"qualifiedSigner": hex.EncodeToString(a.QualifiedSigner),
		"extraData":       hex.EncodeToString(a.ExtraData),
		"clockInfo": map[string]any{
			"clock": a.ClockInfo.Clock, "resetCount": a.ClockInfo.ResetCount,
			"restartCount": a.ClockInfo.RestartCount, "safe": a.ClockInfo.Safe,
		},
		"firmwareVersion": fmt.Sprintf("0x%016x", a.FirmwareVersion),
		"pcrSelect":       sel,
		"pcrDigest":       hex.EncodeToString(a.PCRDigest),
	}
}
