package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ratatouille/rat/evidence/failure"
	"github.com/ratatouille/rat/evidence/ima"
	"github.com/ratatouille/rat/evidence/runtimepolicy"
)

func init() {
	register(command{name: "policy", summary: "Keylime runtime policies: create, check, sign, verify", run: runPolicy})
}

const policyUsage = `usage:
  rat policy create --ima-log FILE [--allowlist F] [--exclude-list F] [--base P] [--ima-buf]
                    [--keyrings] [--ignored-keyring NAME]... [--verification-key PEM]... -o policy.json
  rat policy check --policy P --ima-log FILE [--json]
  rat policy diff [--json] A B
  rat policy keygen [-o policy-key.pem]
  rat policy push --group G [--bundle B] [--hub URL] POLICY
exit: 0 ok, 1 policy violations (check), 2 usage or unusable input`

func runPolicy(args []string) int {
	return dispatch("rat policy", policyUsage, args, map[string]verb{
		"create": policyCreate,
		"check":  policyCheck,
		"diff":   policyDiff,   // policydiff.go
		"sign":   policySign,   // policysign.go
		"verify": policyVerify, // policysign.go
		"keygen": policyKeygen, // keygen.go
		"push":   policyPush,   // hubclient.go
	})
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func policyCreate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rat policy create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	logPath := fs.String("ima-log", "", "IMA ascii measurement log")
	allowlist := fs.String("allowlist", "", "flat allowlist (\"<digest> <path>\" lines)")
	exclude := fs.String("exclude-list", "", "file of exclude regexes, one per line")
	fs.StringVar(exclude, "exclude", "", "alias of --exclude-list")
	base := fs.String("base", "", "base runtime policy to merge into")
	imaBuf := fs.Bool("ima-buf", false, "keep ima-buf entries")
	keyrings := fs.Bool("keyrings", false, "keep keyring entries")
	var ignored multiFlag
	fs.Var(&ignored, "ignored-keyring", "keyring to ignore (repeatable)")
	var vkeys multiFlag
	fs.Var(&vkeys, "verification-key", "IMA signature verification key or certificate, PEM (repeatable)")
	out := fs.String("o", "", "output policy file (- for stdout)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *out == "" || (*logPath == "" && *allowlist == "" && *base == "") {
		fmt.Fprintln(stderr, "rat policy create: need -o and at least one of --ima-log, --allowlist, --base")
		return 2
	}
	var opts []runtimepolicy.GenOption
	var entries []ima.Entry
	if *logPath != "" {
		var err error
		if entries, err = readIMALog(*logPath); err != nil {
			fmt.Fprintf(stderr, "rat policy create: %v\n", err)
			return 2
		}
	}
	if *allowlist != "" {
		b, err := os.ReadFile(*allowlist)
		if err == nil {
			var m map[string][]string
			if m, err = runtimepolicy.ParseAllowlist(b); err == nil {
				opts = append(opts, runtimepolicy.WithAllowlist(m))
			}
		}
		if err != nil {
			fmt.Fprintf(stderr, "rat policy create: %s: %v\n", *allowlist, err)
			return 2
		}
	}
	if *exclude != "" {
		b, err := os.ReadFile(*exclude)
		if err != nil {
			fmt.Fprintf(stderr, "rat policy create: %v\n", err)
			return 2
		}
		for _, l := range strings.Split(string(b), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				opts = append(opts, runtimepolicy.WithExcludes(l))
			}
		}
	}
	if *base != "" {
		p, err := loadPolicy(*base)
		if err != nil {
			fmt.Fprintf(stderr, "rat policy create: %v\n", err)
			return 2
		}
		opts = append(opts, runtimepolicy.WithBase(p))
	}
	if *imaBuf {
		opts = append(opts, runtimepolicy.WithIMABuf())
	}
	if *keyrings {
		opts = append(opts, runtimepolicy.WithKeyrings())
	}
	if len(ignored) > 0 {
		opts = append(opts, runtimepolicy.WithIgnoredKeyrings(ignored...))
	}
	for _, k := range vkeys {
		b, err := os.ReadFile(k)
		if err != nil {
			fmt.Fprintf(stderr, "rat policy create: %v\n", err)
			return 2
		}
		opts = append(opts, runtimepolicy.WithVerificationKeys(b))
	}
	p, err := runtimepolicy.FromEntries(entries, opts...)
	if err != nil {
		fmt.Fprintf(stderr, "rat policy create: %v\n", err)
		return 2
	}
	b, err := p.Marshal()
	if err != nil {
		fmt.Fprintf(stderr, "rat policy create: %v\n", err)
		return 2
	}
	b = append(b, '\n')
	if *out == "-" {
		_, err = stdout.Write(b)
	} else {
		err = os.WriteFile(*out, b, 0o644)
	}
	if err != nil {
		fmt.Fprintf(stderr, "rat policy create: %v\n", err)
		return 2
	}
	return 0
}

func policyCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rat policy check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	polPath := fs.String("policy", "", "runtime policy (Keylime JSON)")
	logPath := fs.String("ima-log", "", "IMA ascii measurement log")
	asJSON := fs.Bool("json", false, "print events as JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *polPath == "" || *logPath == "" {
		fmt.Fprintln(stderr, "rat policy check: need --policy and --ima-log")
		return 2
	}
	p, err := loadPolicy(*polPath)
	if err != nil {
		fmt.Fprintf(stderr, "rat policy check: %v\n", err)
		return 2
	}
	entries, err := readIMALog(*logPath)
	if err != nil {
		fmt.Fprintf(stderr, "rat policy check: %v\n", err)
		return 2
	}
	evs := runtimepolicy.Evaluate(p, entries)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if evs == nil {
			evs = []failure.Event{}
		}
		if err := enc.Encode(evs); err != nil {
			return 2
		}
	} else {
		for _, e := range evs {
			fmt.Fprintln(stdout, e.String())
		}
		if len(evs) == 0 {
			fmt.Fprintf(stdout, "ok: %d entries allowed by %s\n", len(entries), *polPath)
		}
	}
	if len(evs) > 0 {
		return 1
	}
	return 0
}

func loadPolicy(path string) (*runtimepolicy.Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p, err := runtimepolicy.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// readIMALog reads an IMA log, ascii or binary (evidence/ima sniffs which).
func readIMALog(path string) ([]ima.Entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	es, err := ima.Parse(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return es, nil
}
