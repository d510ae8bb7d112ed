package main

import (
	"bytes"
	"crypto/x509"
	_ "embed"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/ratatouille/rat/audit"
	"github.com/ratatouille/rat/evidence/bundle"
	"github.com/ratatouille/rat/evidence/claims"
	"github.com/ratatouille/rat/evidence/ima"
	"github.com/ratatouille/rat/evidence/protocol"
	"github.com/ratatouille/rat/evidence/quote"
)

//go:embed verify.sh
var verifyScript []byte

//go:embed open-readme.md
var openReadme []byte

// exporter writes a bundle out as plain files. It believes nothing: it
// copies bytes and derives only what an open tool needs as input
// (qualifying data = SHA-256 of the claims, PCR files, log prefixes), and
// verify.sh re-derives or checks each of those itself where it can.
type exporter struct {
	dir      string
	boot     int
	bootLog  *os.File
	bootLen  int64
	bootFrom uint64  // IMA index of the boot log's first entry
	bootNext uint64  // index the next appended entry must have
	bootEnds []int64 // bootEnds[k]: bytes of the boot log's first k entries
	policies int
	// eventLog is the firmware event log file waiting for its quote.
	eventLog string
}

func cmdExportOpen(args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 {
		fmt.Fprintln(stderr, "rat-audit export-open: want bundle.cbor DIR")
		return exitUnusable
	}
	if err := exportOpen(args[0], args[1]); err != nil {
		fmt.Fprintf(stderr, "rat-audit export-open: %v\n", err)
		return exitUnusable
	}
	fmt.Fprintf(stdout, "wrote %s; run %s\n", args[1], filepath.Join(args[1], "verify.sh"))
	return exitTrusted
}

func exportOpen(path, dir string) error {
	in, err := os.Open(path)
	if err != nil {
		return err
	}
	defer in.Close()
	d, err := bundle.NewDecoder(in)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "quotes"), 0o755); err != nil {
		return err
	}
	for _, sub := range []string{"ima", "policies"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return err
		}
	}
	e := &exporter{dir: dir}
	defer e.closeBoot()
	if err := e.header(d.Header()); err != nil {
		return err
	}
	for {
		it, err := d.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		switch v := it.(type) {
		case *bundle.Policy:
			if err := e.policy(v); err != nil {
				return err
			}
		case *protocol.Evidence:
			if err := e.record(v); err != nil {
				return err
			}
		}
	}
	if err := e.write("verify.sh", verifyScript, 0o755); err != nil {
		return err
	}
	return e.write("README.md", openReadme, 0o644)
}

func (e *exporter) write(name string, b []byte, mode os.FileMode) error {
	p := filepath.Join(e.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, b, mode)
}

func pemKey(der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}) }

func (e *exporter) header(h *bundle.Header) error {
	pub, err := audit.AKPublicKey(h.AKPublic)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"ak.pem":         pemKey(der),
		"ak.tpmt-public": h.AKPublic,
		"ek.tpmt-public": h.EKPublic,
		"ueid.hex":       []byte(hex.EncodeToString(claims.UEID(h.EKPublic)) + "\n"),
	}
	for i, c := range h.EKCerts {
		files[fmt.Sprintf("ek-cert-%d.der", i)] = c
	}
	if len(h.Binding) > 0 {
		files["ak-binding.cose"] = h.Binding
	}
	if len(h.HubKey) > 0 {
		files["hub-key.bundle.pem"] = pemKey(h.HubKey)
	}
	if len(h.TrustedRoot) > 0 {
		files["trusted_root.bundle.json"] = h.TrustedRoot
	}
	for name, b := range files {
		if err := e.write(name, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (e *exporter) policy(p *bundle.Policy) error {
	e.policies++
	sub := fmt.Sprintf("policies/%02d", e.policies)
	if err := e.write(sub+"/policy.json", p.Document, 0o644); err != nil {
		return err
	}
	if len(p.SigstoreBundle) > 0 {
		if err := e.write(sub+"/policy.sigstore.json", p.SigstoreBundle, 0o644); err != nil {
			return err
		}
	}
	return e.write(sub+"/in-force.txt", []byte(fmt.Sprintf("name=%s\nsince=%d\nfrom_seq=%d\n", p.Name, p.Since, p.FromSeq)), 0o644)
}

func (e *exporter) closeBoot() {
	if e.bootLog != nil {
		e.bootLog.Close()
		e.bootLog = nil
	}
}

// appendIMA adds a record's entries to the current boot's log file.
func (e *exporter) appendIMA(r *protocol.Evidence) error {
	if len(r.IMA) == 0 {
		return nil
	}
	es, err := ima.ParseBinary(bytes.NewReader(r.IMA))
	if err != nil {
		return fmt.Errorf("record %d: IMA: %w", r.Seq, err)
	}
	n := uint64(len(es))
	if e.bootLog == nil || (r.IMAStart == 0 && e.bootNext > 0) {
		e.closeBoot()
		e.boot++
		f, err := os.Create(filepath.Join(e.dir, "ima", fmt.Sprintf("boot-%d.bin", e.boot)))
		if err != nil {
			return err
		}
		e.bootLog, e.bootLen, e.bootFrom, e.bootNext, e.bootEnds = f, 0, r.IMAStart, r.IMAStart, []int64{0}
		if err := e.write(fmt.Sprintf("ima/boot-%d.first-entry", e.boot), []byte(fmt.Sprintf("%d\n", r.IMAStart)), 0o644); err != nil {
			return err
		}
	}
	if r.IMAStart != e.bootNext {
		return fmt.Errorf("record %d: IMA entries start at %d, the log so far ends at %d", r.Seq, r.IMAStart, e.bootNext)
	}
	if _, err := e.bootLog.Write(r.IMA); err != nil {
		return err
	}
	for i := range es {
		e.bootLen += int64(len(ima.MarshalBinary(es[i : i+1])))
		e.bootEnds = append(e.bootEnds, e.bootLen)
	}
	e.bootNext += n
	return nil
}

func (e *exporter) record(r *protocol.Evidence) error {
	if err := e.appendIMA(r); err != nil {
		return err
	}
	if len(r.EventLog) > 0 {
		e.eventLog = fmt.Sprintf("eventlog/record-%08d.bin", r.Seq)
		if err := e.write(e.eventLog, r.EventLog, 0o644); err != nil {
			return err
		}
	}
	if !r.Quoted() {
		return nil
	}
	sub := fmt.Sprintf("quotes/%08d", r.Seq)
	qd := claims.QualifyingData(r.Claims)
	sel, vals, err := pcrFiles(r)
	if err != nil {
		return fmt.Errorf("record %d: %w", r.Seq, err)
	}
	files := map[string][]byte{
		"quote.attest": r.Attest,
		"quote.sig":    r.Signature,
		"claims.cbor":  r.Claims,
		"nonce.hex":    []byte(hex.EncodeToString(qd) + "\n"),
		"pcrs.bin":     vals,
		"pcr-list":     []byte(sel + "\n"),
		"time":         []byte(fmt.Sprintf("%d\n", r.Time)),
		"digest.hex":   []byte(hex.EncodeToString(claims.QuoteDigest(r.Attest, r.Signature)) + "\n"),
	}
	if e.eventLog != "" {
		files["eventlog"] = []byte(e.eventLog + "\n")
		e.eventLog = ""
	}
	if c, err := claims.Unmarshal(r.Claims); err == nil {
		if len(c.Prev) > 0 {
			files["prev.hex"] = []byte(hex.EncodeToString(c.Prev) + "\n")
		}
		if e.bootLog != nil && e.bootFrom == 0 && c.IMACount <= e.bootNext {
			// The log prefix this quote covers: entries 0..IMACount-1.
			files["ima.boot"] = []byte(fmt.Sprintf("%d\n", e.boot))
			files["ima.bytes"] = []byte(fmt.Sprintf("%d\n", e.bootEnds[c.IMACount]))
		}
	}
	if v := r.PCRs[quote.AlgSHA256][10]; len(v) == 32 {
		var b strings.Builder
		for i := 0; i < 24; i++ {
			x := make([]byte, 32)
			if i == 10 {
				x = v
			}
			fmt.Fprintf(&b, "PCR-%02d: %s\n", i, hex.EncodeToString(x))
		}
		files["pcrs.evmctl"] = []byte(b.String())
	}
	for name, b := range files {
		if err := e.write(sub+"/"+name, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// pcrFiles gives tpm2_checkquote its inputs: the PCR list in the quote's
// selection order ("sha256:0,1,...") and the values concatenated in that
// order (the "values" format).
func pcrFiles(r *protocol.Evidence) (string, []byte, error) {
	a, err := quote.DecodeAttest(r.Attest)
	if err != nil {
		return "", nil, err
	}
	var lists []string
	var vals []byte
	for _, s := range a.PCRSelections {
		name := map[uint16]string{quote.AlgSHA1: "sha1", quote.AlgSHA256: "sha256", quote.AlgSHA384: "sha384", quote.AlgSHA512: "sha512"}[s.Hash]
		if name == "" {
			return "", nil, fmt.Errorf("bank 0x%04x", s.Hash)
		}
		var idx []string
		for _, p := range s.PCRs {
			idx = append(idx, fmt.Sprint(p))
			vals = append(vals, r.PCRs[s.Hash][p]...)
		}
		lists = append(lists, name+":"+strings.Join(idx, ","))
	}
	return strings.Join(lists, "+"), vals, nil
}
