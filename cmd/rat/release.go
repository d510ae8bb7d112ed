package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ratatouille/rat/ota/rollout"
)

func init() {
	register(command{name: "release", summary: "OTA releases at the hub: add | approve | state | list | history | gate", run: func(a []string) int { return releaseCmd(a, os.Stdout, os.Stderr) }})
}

const releaseUsage = `usage:
  rat release add     --group G (--record release.json | --version V --image-digest SHA256) --policy policy.json [--bundle policy.sigstore.json]
  rat release approve --group G --version V [--reason TEXT] [--by NAME]
  rat release state   --group G --version V --to rolling-out|complete|retired [--reason TEXT] [--by NAME]
  rat release list    --group G [--json]
  rat release history --group G --version V [--json]   (every transition: when, who — "hub" for its own — and why)
  rat release gate    --group G --version V   (exit 0 approved, 1 not approved)
hub flags: --hub URL --token-file FILE (or RAT_HUB, RAT_TOKEN, RAT_TOKEN_FILE)`

// releaseCmd talks to the hub's release routes (docs/ota.md). The policy
// is sent as its exact bytes (base64): the Sigstore bundle covers them
// byte for byte, and the hub checks it at approval.
func releaseCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) < 1 {
		fmt.Fprintln(stderr, releaseUsage)
		return 2
	}
	verb := args[0]
	fs := flag.NewFlagSet("rat release "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	h := addHubFlags(fs)
	group := fs.String("group", "", "release group")
	version := fs.String("version", "", "release version")
	record := fs.String("record", "", "draft release record from rat ota policy --release-out")
	imageDigest := fs.String("image-digest", "", "sha256 (hex) of the OTA artifact")
	policy := fs.String("policy", "", "runtime policy of the release")
	bundle := fs.String("bundle", "", "Sigstore bundle of the policy")
	to := fs.String("to", "", "target state")
	reason := fs.String("reason", "", "why (recorded in the release history)")
	by := fs.String("by", os.Getenv("USER"), "who (recorded in the release history)")
	asJSON := fs.Bool("json", false, "print the hub's JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "rat release %s: %s\n", verb, fmt.Sprintf(format, a...))
		return 2
	}
	if *record != "" {
		b, err := os.ReadFile(*record)
		if err != nil {
			return fail("%v", err)
		}
		var r rollout.Release
		if err := json.Unmarshal(b, &r); err != nil {
			return fail("--record %s: %v", *record, err)
		}
		if *group == "" {
			*group = r.Group
		}
		if *version == "" {
			*version = r.Version
		}
		if *imageDigest == "" {
			*imageDigest = r.ImageDigest
		}
		if r.Group != *group || r.Version != *version {
			return fail("--record is for %s/%s, not %s/%s", r.Group, r.Version, *group, *version)
		}
	}
	if *group == "" {
		return fail("--group is required\n%s", releaseUsage)
	}
	base := "/v1/groups/" + url.PathEscape(*group) + "/releases"
	rel := base + "/" + url.PathEscape(*version)
	needVersion := func() bool { return *version != "" }
	var (
		method, path string
		body         []byte
	)
	switch verb {
	case "add":
		if !needVersion() || *policy == "" || *imageDigest == "" {
			return fail("needs --version, --image-digest (or --record) and --policy")
		}
		doc, err := os.ReadFile(*policy)
		if err != nil {
			return fail("%v", err)
		}
		req := map[string]any{"version": *version, "image_digest": *imageDigest, "policy_base64": doc, "by": *by}
		if *bundle != "" {
			b, err := os.ReadFile(*bundle)
			if err != nil {
				return fail("%v", err)
			}
			req["bundle_base64"] = b
		}
		body, _ = json.Marshal(req)
		method, path = http.MethodPost, base
	case "approve", "state":
		if !needVersion() {
			return fail("needs --version")
		}
		req := map[string]string{"by": *by, "reason": *reason}
		path = rel + "/approve"
		if verb == "state" {
			if *to == "" {
				return fail("needs --to")
			}
			req["state"], path = *to, rel+"/state"
		}
		body, _ = json.Marshal(req)
		method = http.MethodPost
	case "list":
		method, path = http.MethodGet, base
	case "history":
		if !needVersion() {
			return fail("needs --version")
		}
		method, path = http.MethodGet, base
	case "gate":
		if !needVersion() {
			return fail("needs --version")
		}
		method, path = http.MethodGet, rel
	default:
		fmt.Fprintln(stderr, releaseUsage)
		return 2
	}
	b, code, err := h.do(method, path, body)
	if err != nil {
		return fail("%v", err)
	}
	if verb == "gate" {
		var a rollout.GateAnswer
		if err := json.Unmarshal(b, &a); err != nil || code == http.StatusUnauthorized {
			return fail("%d %s", code, strings.TrimSpace(string(b)))
		}
		if *asJSON {
			stdout.Write(b)
		} else {
			fmt.Fprintf(stdout, "%s/%s: approved=%v state=%s image=%s policy=%s (%s)\n", a.Group, a.Version, a.Approved, a.State, a.ImageDigest, a.PolicyDigest, a.Reason)
		}
		if a.Approved && code == http.StatusOK {
			return 0
		}
		return 1
	}
	if code/100 != 2 {
		fmt.Fprintf(stderr, "rat release %s: refused (%d): %s", verb, code, b)
		return 1
	}
	if (verb != "list" && verb != "history") || (*asJSON && verb == "list") {
		stdout.Write(b)
		return 0
	}
	var rs []rollout.Release
	if err := json.Unmarshal(b, &rs); err != nil {
		return fail("%v", err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	if verb == "history" {
		for _, r := range rs {
			if r.Version != *version {
				continue
			}
			if *asJSON {
				out, _ := json.MarshalIndent(r.History, "", "  ")
				fmt.Fprintf(stdout, "%s\n", out)
				return 0
			}
			fmt.Fprintln(tw, "AT\tFROM\tTO\tBY\tREASON")
			for _, h := range r.History {
				from := string(h.From)
				if from == "" {
					from = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", h.At.UTC().Format(time.RFC3339), from, h.To, h.By, h.Reason)
			}
			tw.Flush()
			return 0
		}
		fmt.Fprintf(stderr, "rat release history: %s has no release %s\n", *group, *version)
		return 1
	}
	// BY is who made the last transition ("hub" for the hub's own).
	fmt.Fprintln(tw, "VERSION\tSTATE\tSINCE\tBY\tSIGNER\tIMAGE\tPOLICY")
	for _, r := range rs {
		signer := "-"
		if r.Signature != nil {
			signer = r.Signature.Identity
		}
		since, who := "-", "-"
		if n := len(r.History); n > 0 {
			since, who = r.History[n-1].At.UTC().Format(time.RFC3339), r.History[n-1].By
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.12s\t%.12s\n", r.Version, r.State, since, who, signer, r.ImageDigest, r.PolicyDigest)
	}
	tw.Flush()
	return 0
}
