package main

// rat init-baseline: a group's first runtime policy from the IMA log of a
// settled baseline device, optionally signed and committed to a policy
// repository checkout in the layout hub/gitops reads.

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ratatouille/rat/evidence/ima"
	"github.com/ratatouille/rat/evidence/protocol"
	"github.com/ratatouille/rat/evidence/runtimepolicy"
)

func init() {
	register(command{name: "init-baseline", summary: "a group's runtime policy from a baseline device's IMA log (sign, commit)", run: func(args []string) int {
		return initBaseline(args, os.Stdout, os.Stderr)
	}})
}

const baselineUsage = `usage:
  rat init-baseline --group G (--log IMA_LOG | --device ID [--hub URL]) [-o policy.json] [--exclude-list F]
                    [--sign --key cosign.key [--rekor-url URL]] [--commit REPO_CHECKOUT]
  --commit writes REPO/groups/G/runtime_policy.json (and .sigstore.json with --sign) and
  commits them there (git add + git commit of those paths only; pushing is yours to do).
  --device takes the current boot's log as the hub verified it (RAT_HUB, RAT_TOKEN_FILE).
  The policy allows exactly what the log shows ran: capture it after the device settled.
exit: 0 ok, 2 usage or unusable input`

func initBaseline(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rat init-baseline", flag.ContinueOnError)
	fs.SetOutput(stderr)
	group := fs.String("group", "", "policy group")
	logPath := fs.String("log", "", "IMA measurement log of the baseline device (ascii or binary)")
	out := fs.String("o", "", "policy output (default: groups/G/runtime_policy.json in --commit, else required)")
	exclude := fs.String("exclude-list", "", "file of exclude regexes, one per line")
	doSign := fs.Bool("sign", false, "sign the policy (writes <policy>.sigstore.json)")
	keyPath := fs.String("key", "", "signing key for --sign (cosign.key, password in $COSIGN_PASSWORD)")
	rekor := fs.String("rekor-url", "", "Rekor v1 URL for the signature's log entry")
	repo := fs.String("commit", "", "policy repository checkout to commit the files to")
	device := fs.String("device", "", "take the log from the hub's verified record of this baseline device instead of --log")
	hf := addHubFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "rat init-baseline: "+format+"\n", a...)
		return 2
	}
	if *group == "" || (*logPath == "") == (*device == "") {
		return fail("need --group and one of --log or --device\n%s", baselineUsage)
	}
	if err := protocol.ValidID(*group); err != nil {
		return fail("group: %v", err)
	}
	if *doSign != (*keyPath != "") {
		return fail("--sign and --key go together")
	}
	if *repo == "" && *out == "" {
		return fail("need -o or --commit\n%s", baselineUsage)
	}
	dst := *out
	if *repo != "" {
		rel := filepath.Join("groups", *group, "runtime_policy.json")
		if dst == "" {
			dst = filepath.Join(*repo, rel)
		} else if !within(*repo, dst) {
			return fail("-o %s is outside the repository %s", dst, *repo)
		}
	}

	var entries []ima.Entry
	var err error
	if *device != "" {
		// The hub's copy is the log it verified against the device's quotes.
		b, code, herr := hf.do(http.MethodGet, "/v1/devices/"+url.PathEscape(*device)+"/ima-log", nil)
		if herr != nil || code != http.StatusOK {
			return fail("hub: %v %d %s", herr, code, b)
		}
		entries, err = ima.ParseBinary(bytes.NewReader(b))
	} else {
		entries, err = readIMALog(*logPath)
	}
	if err != nil {
		return fail("%v", err)
	}
	var opts []runtimepolicy.GenOption
	if *exclude != "" {
		b, err := os.ReadFile(*exclude)
		if err != nil {
			return fail("%v", err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				opts = append(opts, runtimepolicy.WithExcludes(l))
			}
		}
	}
	p, err := runtimepolicy.FromEntries(entries, opts...)
	if err != nil {
		return fail("%v", err)
	}
	doc, err := p.Marshal()
	if err != nil {
		return fail("%v", err)
	}
	doc = append(doc, '\n')
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fail("%v", err)
	}
	if err := os.WriteFile(dst, doc, 0o644); err != nil {
		return fail("%v", err)
	}
	written := []string{dst}
	if *doSign {
		b, err := signPolicy(doc, *keyPath, "", "", *rekor, 30*time.Second)
		if err != nil {
			return fail("sign: %v", err)
		}
		bp := dst + ".sigstore.json"
		if err := os.WriteFile(bp, append(b, '\n'), 0o644); err != nil {
			return fail("%v", err)
		}
		written = append(written, bp)
		if *rekor == "" {
			fmt.Fprintln(stderr, "rat init-baseline: note: no transparency-log entry; the group must be key-only without tlog")
		}
	}
	fmt.Fprintf(stdout, "baseline for group %s: %d entries, %d paths -> %s\n", *group, len(entries), len(p.Digests), strings.Join(written, ", "))
	if *repo != "" {
		if err := commitFiles(*repo, written, fmt.Sprintf("policy(%s): baseline from %s", *group, filepath.Base(*logPath))); err != nil {
			return fail("commit: %v", err)
		}
		fmt.Fprintf(stdout, "committed to %s; review and push to deploy\n", *repo)
	}
	return 0
}

// within reports whether p lies inside dir.
func within(dir, p string) bool {
	ad, err1 := filepath.Abs(dir)
	ap, err2 := filepath.Abs(p)
	if err1 != nil || err2 != nil {
		return false
	}
	rel, err := filepath.Rel(ad, ap)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// commitFiles commits exactly files in the checkout repo with the
// operator's own git (their identity, their commit signing settings).
// Fixed arguments; paths go after "--".
func commitFiles(repo string, files []string, msg string) error {
	rels := make([]string, 0, len(files))
	for _, f := range files {
		ar, _ := filepath.Abs(repo)
		af, _ := filepath.Abs(f)
		rel, err := filepath.Rel(ar, af)
		if err != nil {
			return err
		}
		rels = append(rels, rel)
	}
	run := func(args ...string) error {
		cmd := exec.Command("git", append([]string{"-C", repo}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("git %s: %w: %s", args[0], err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	if err := run(append([]string{"add", "--"}, rels...)...); err != nil {
		return err
	}
	return run(append([]string{"commit", "-q", "-m", msg, "--"}, rels...)...)
}
