package main

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/ratatouille/rat/evidence/eventlog"
)

func init() {
	register(command{name: "eventlog", summary: "firmware event logs: replay PCRs, Secure Boot state", run: func(args []string) int {
		return runEventlog(args, os.Stdout, os.Stderr)
	}})
}

// flagsAnywhere parses fs from args, allowing flags after positional
// arguments (rat eventlog replay LOG --json), and returns the positionals.
func flagsAnywhere(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

const eventlogUsage = "usage: rat eventlog replay [--bank sha256|sha1|sha384|sha512] [--json] FILE"

func runEventlog(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "replay" {
		fmt.Fprintln(stderr, eventlogUsage)
		return 2
	}
	fs := flag.NewFlagSet("rat eventlog replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bankName := fs.String("bank", "", "PCR bank to replay (default sha256, or sha1 for a SHA-1 log)")
	asJSON := fs.Bool("json", false, `print {"sha256": {"0": "<hex>", ...}, "secure_boot": {...}}`)
	pos, err := flagsAnywhere(fs, args[1:])
	if err != nil {
		return 2
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, eventlogUsage)
		return 2
	}
	raw, err := os.ReadFile(pos[0])
	if err != nil {
		fmt.Fprintln(stderr, "rat eventlog replay:", err)
		return 2
	}
	l, err := eventlog.Parse(raw)
	if err != nil {
		fmt.Fprintf(stderr, "rat eventlog replay: %s: %v\n", pos[0], err)
		return 2
	}
	bank := eventlog.AlgSHA256
	if *bankName == "" && l.Format == eventlog.SHA1 {
		bank = eventlog.AlgSHA1
	}
	if *bankName != "" {
		var ok bool
		if bank, ok = eventlog.AlgByName(*bankName); !ok {
			fmt.Fprintf(stderr, "rat eventlog replay: unknown bank %q\n", *bankName)
			return 2
		}
	}
	pcrs, err := l.Replay(bank)
	if err != nil {
		fmt.Fprintf(stderr, "rat eventlog replay: %s: %v\n", pos[0], err)
		return 2
	}
	// The Secure Boot state is read from event data; data that is not the
	// preimage of its digest makes the log unusable, not "Secure Boot off".
	st, err := l.SecureBoot()
	if err != nil {
		fmt.Fprintf(stderr, "rat eventlog replay: %s: %v\n", pos[0], err)
		return 2
	}
	name := eventlog.AlgName(bank)
	if *asJSON {
		vals := map[string]string{}
		for p, v := range pcrs {
			vals[strconv.Itoa(p)] = hex.EncodeToString(v)
		}
		out := map[string]any{name: vals, "secure_boot": secureBootJSON(st), "format": l.Format.String(), "events": len(l.Events)}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
		return 0
	}
	var banks []string
	for _, b := range l.Banks {
		banks = append(banks, eventlog.AlgName(b.Alg))
	}
	fmt.Fprintf(stdout, "%s: %s log, %d events, banks %s\n", pos[0], l.Format, len(l.Events), strings.Join(banks, ","))
	fmt.Fprintf(stdout, "%s:\n", name)
	for _, p := range sortedPCRs(pcrs) {
		fmt.Fprintf(stdout, "  %2d: %x\n", p, pcrs[p])
	}
	printSecureBoot(stdout, st)
	fmt.Fprintln(stdout, "(unverified: only a quote of these PCRs makes the log and this state evidence)")
	return 0
}

func sortedPCRs(m map[int][]byte) []int {
	out := make([]int, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	sort.Ints(out)
	return out
}

type sbVarJSON struct {
	Event        int      `json:"event"`
	Name         string   `json:"name"`
	GUID         string   `json:"guid"`
	Size         int      `json:"size"`
	Value        string   `json:"value,omitempty"` // hex, for short variables such as SecureBoot
	X509         []string `json:"x509,omitempty"`  // certificate subjects
	SHA256Hashes int      `json:"sha256_hashes,omitempty"`
	Other        int      `json:"other_signatures,omitempty"`
}

func sbVar(v eventlog.SecureBootVar, authority bool) sbVarJSON {
	j := sbVarJSON{Event: v.Event, Name: v.Name, GUID: v.GUID.String(), Size: len(v.Data)}
	if len(v.Data) <= 8 {
		j.Value = hex.EncodeToString(v.Data)
	}
	for _, s := range v.Signatures {
		switch s.Type {
		case eventlog.EFICertX509GUID:
			j.X509 = append(j.X509, s.Subject())
		case eventlog.EFICertSHA256GUID:
			j.SHA256Hashes++
		default:
			j.Other++
		}
	}
	// An authority event holds one EFI_SIGNATURE_DATA: owner GUID, then
	// the certificate that verified the image.
	// (shim's own "Shim" authority is the bare certificate).
	if authority && len(v.Data) > 16 {
		if c, err := x509.ParseCertificate(v.Data[16:]); err == nil {
			j.X509 = []string{c.Subject.String()}
		} else if c, err := x509.ParseCertificate(v.Data); err == nil {
			j.X509 = []string{c.Subject.String()}
		}
	}
	return j
}

func secureBootJSON(st eventlog.State) map[string]any {
	vars := []sbVarJSON{}
	for _, v := range st.Variables {
		vars = append(vars, sbVar(v, false))
	}
	auth := []sbVarJSON{}
	for _, v := range st.Authorities {
		auth = append(auth, sbVar(v, true))
	}
	return map[string]any{"measured": st.Measured, "enabled": st.Enabled, "separator": st.Separator, "variables": vars, "authorities": auth}
}

func printSecureBoot(w io.Writer, st eventlog.State) {
	switch {
	case !st.Measured:
		fmt.Fprintln(w, "Secure Boot: not measured (no SecureBoot variable in PCR 7)")
	case st.Enabled:
		fmt.Fprintln(w, "Secure Boot: enabled")
	default:
		fmt.Fprintln(w, "Secure Boot: disabled")
	}
	if !st.Separator {
		fmt.Fprintln(w, "  PCR 7 has no separator: the configuration below is incomplete")
	}
	for _, v := range st.Variables {
		j := sbVar(v, false)
		line := fmt.Sprintf("  %-10s event %3d, %d bytes", j.Name, j.Event, j.Size)
		if j.Value != "" {
			line += ", value " + j.Value
		}
		if len(j.X509) > 0 || j.SHA256Hashes > 0 || j.Other > 0 {
			line += fmt.Sprintf(", %d x509, %d sha256, %d other", len(j.X509), j.SHA256Hashes, j.Other)
		}
		fmt.Fprintln(w, line)
		for _, s := range j.X509 {
			fmt.Fprintf(w, "             %s\n", s)
		}
	}
	for _, v := range st.Authorities {
		j := sbVar(v, true)
		fmt.Fprintf(w, "  authority  event %3d: %s", j.Event, j.Name)
		if len(j.X509) > 0 {
			fmt.Fprintf(w, " (%s)", j.X509[0])
		}
		fmt.Fprintln(w)
	}
}
