// Command rat-audit is the offline auditor: it verifies an evidence bundle
// without our service (verify), summarises it (inspect), or writes it out
// as plain files with a verify.sh that checks each layer with tools we did
// not write (export-open). It imports the evidence module and audit, never
// the hub.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ratatouille/rat/audit"
)

// Exit codes: 0 only for a fully verified TRUSTED span; 1 for UNTRUSTED,
// INCONCLUSIVE or any failed check; 2 for unusable input or usage errors.
const (
	exitTrusted  = 0
	exitNotTrust = 1
	exitUnusable = 2
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUnusable
	}
	switch args[0] {
	case "verify":
		return cmdVerify(args[1:], stdout, stderr)
	case "inspect":
		return cmdInspect(args[1:], stdout, stderr)
	case "export-open":
		return cmdExportOpen(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		usage(stdout)
		return exitTrusted
	}
	fmt.Fprintf(stderr, "rat-audit: unknown command %q\n", args[0])
	usage(stderr)
	return exitUnusable
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  rat-audit verify bundle.cbor [--ek-roots DIR] [--trusted-root trusted_root.json]
                               [--identity I --issuer S | --key K] [--without-tlog-unsafe]
                               [--hub-key hub.pem] [--waive CHECK=REASON]... [--json]
  rat-audit inspect bundle.cbor
  rat-audit export-open bundle.cbor DIR
exit: 0 TRUSTED (fully verified), 1 UNTRUSTED/INCONCLUSIVE/failed check, 2 unusable input
`)
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

// splitArgs lets flags come after the bundle path, as the usage shows.
func splitArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) > 0 {
			pos = append(pos, args[0])
			args = args[1:]
		}
	}
	return pos, nil
}

func cmdVerify(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ekRoots := fs.String("ek-roots", "", "directory of TPM manufacturer root/intermediate certificates (PEM or DER)")
	trustedRoot := fs.String("trusted-root", "", "Sigstore trusted_root.json for policy signatures")
	identity := fs.String("identity", "", "allowed keyless policy signer: certificate identity (SAN)")
	issuer := fs.String("issuer", "", "allowed keyless policy signer: OIDC issuer")
	key := fs.String("key", "", "allowed policy signing key (PEM public key)")
	noTlog := fs.Bool("without-tlog-unsafe", false, "accept key-signed policies without a transparency-log entry (cosign --insecure-ignore-tlog)")
	hubKey := fs.String("hub-key", "", "the hub's public key (PEM) to check the AK binding and bundle signature")
	var waive multi
	fs.Var(&waive, "waive", "CHECK=REASON: accept a check that cannot be made (e.g. event-log-replay=no event log on this board)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	pos, err := splitArgs(fs, args)
	if err != nil {
		return exitUnusable
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "rat-audit verify: want exactly one bundle")
		return exitUnusable
	}
	var opts []audit.Option
	if *ekRoots != "" {
		opts = append(opts, audit.WithEKRootsDir(*ekRoots))
	}
	if *trustedRoot != "" {
		b, err := os.ReadFile(*trustedRoot)
		if err != nil {
			fmt.Fprintf(stderr, "rat-audit: %v\n", err)
			return exitUnusable
		}
		opts = append(opts, audit.WithTrustedRoot(b, *trustedRoot))
	}
	if (*identity == "") != (*issuer == "") {
		fmt.Fprintln(stderr, "rat-audit verify: --identity and --issuer go together")
		return exitUnusable
	}
	if *identity != "" {
		opts = append(opts, audit.WithIdentity(*issuer, *identity))
	}
	if *key != "" {
		b, err := os.ReadFile(*key)
		if err != nil {
			fmt.Fprintf(stderr, "rat-audit: %v\n", err)
			return exitUnusable
		}
		opts = append(opts, audit.WithPolicyKey(b))
	}
	if *noTlog {
		opts = append(opts, audit.WithoutTlogUnsafe())
	}
	if *hubKey != "" {
		b, err := os.ReadFile(*hubKey)
		if err != nil {
			fmt.Fprintf(stderr, "rat-audit: %v\n", err)
			return exitUnusable
		}
		opts = append(opts, audit.WithHubKeyPEM(b))
	}
	for _, w := range waive {
		name, reason, ok := strings.Cut(w, "=")
		if !ok || reason == "" {
			fmt.Fprintf(stderr, "rat-audit verify: --waive %q: want CHECK=REASON\n", w)
			return exitUnusable
		}
		opts = append(opts, audit.Waive(name, reason))
	}
	f, err := os.Open(pos[0])
	if err != nil {
		fmt.Fprintf(stderr, "rat-audit: %v\n", err)
		return exitUnusable
	}
	defer f.Close()
	rep, err := audit.Verify(bufio.NewReaderSize(f, 1<<20), opts...)
	if err != nil {
		fmt.Fprintf(stderr, "rat-audit: %v\n", err)
		return exitUnusable
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(stderr, "rat-audit: %v\n", err)
			return exitUnusable
		}
	} else {
		rep.WriteText(stdout)
	}
	if rep.Verdict == audit.Trusted {
		return exitTrusted
	}
	return exitNotTrust
}

func cmdInspect(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "rat-audit inspect: want exactly one bundle")
		return exitUnusable
	}
	f, err := os.Open(args[0])
	if err != nil {
		fmt.Fprintf(stderr, "rat-audit: %v\n", err)
		return exitUnusable
	}
	defer f.Close()
	rep, err := audit.Verify(f)
	if err != nil {
		fmt.Fprintf(stderr, "rat-audit: %v\n", err)
		if errors.Is(err, audit.ErrUnusable) {
			return exitUnusable
		}
		return exitUnusable
	}
	inspect(stdout, rep)
	return exitTrusted
}
