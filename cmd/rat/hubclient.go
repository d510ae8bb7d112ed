package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

func init() {
	register(command{name: "devices", summary: "list the hub's devices and their states", run: func(a []string) int { return devicesCmd(a, os.Stdout, os.Stderr) }})
	register(command{name: "device", summary: "device show ID | device clear ID | device decommission ID", run: func(a []string) int { return deviceCmd(a, os.Stdout, os.Stderr) }})
}

// hubFlags are the flags every hub-talking command takes. The hub's URL
// and operator token come from --hub/--token-file or RAT_HUB/RAT_TOKEN.
type hubFlags struct{ url, tokenFile *string }

func addHubFlags(fs *flag.FlagSet) hubFlags {
	return hubFlags{
		url:       fs.String("hub", os.Getenv("RAT_HUB"), "hub HTTP API URL (or RAT_HUB)"),
		tokenFile: fs.String("token-file", os.Getenv("RAT_TOKEN_FILE"), "file holding the operator token (or RAT_TOKEN / RAT_TOKEN_FILE)"),
	}
}

func (h hubFlags) do(method, path string, body []byte) ([]byte, int, error) {
	if *h.url == "" {
		return nil, 0, errors.New("no hub: pass --hub URL or set RAT_HUB")
	}
	tok := os.Getenv("RAT_TOKEN")
	if *h.tokenFile != "" {
		b, err := os.ReadFile(*h.tokenFile)
		if err != nil {
			return nil, 0, err
		}
		tok = strings.TrimSpace(string(b))
	}
	req, err := http.NewRequest(method, strings.TrimRight(*h.url, "/")+path, bytes.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return b, resp.StatusCode, err
}

type deviceRow struct {
	ID           string    `json:"id"`
	Group        string    `json:"group"`
	State        string    `json:"state"`
	Reason       string    `json:"reason"`
	LastVerified time.Time `json:"last_verified"`
	IMAEntries   uint64    `json:"ima_entries"`
	Quotes       uint64    `json:"quotes"`
}

func devicesCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rat devices", flag.ContinueOnError)
	fs.SetOutput(stderr)
	h := addHubFlags(fs)
	asJSON := fs.Bool("json", false, "print the hub's JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	b, code, err := h.do(http.MethodGet, "/v1/devices", nil)
	if err != nil || code != 200 {
		fmt.Fprintf(stderr, "rat devices: %v %s\n", err, b)
		return 2
	}
	if *asJSON {
		stdout.Write(b)
		return 0
	}
	var rows []deviceRow
	if err := json.Unmarshal(b, &rows); err != nil {
		fmt.Fprintln(stderr, "rat devices:", err)
		return 2
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tGROUP\tSTATE\tQUOTES\tIMA\tLAST VERIFIED\tREASON")
	for _, r := range rows {
		lv := "-"
		if !r.LastVerified.IsZero() {
			lv = r.LastVerified.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", r.ID, r.Group, r.State, r.Quotes, r.IMAEntries, lv, r.Reason)
	}
	tw.Flush()
	return 0
}

func deviceCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) < 1 || (args[0] != "show" && args[0] != "clear" && args[0] != "decommission") {
		fmt.Fprintln(stderr, "usage: rat device show ID [--json] | rat device clear ID | rat device decommission ID")
		return 2
	}
	verb := args[0]
	fs := flag.NewFlagSet("rat device "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	h := addHubFlags(fs)
	asJSON := fs.Bool("json", false, "print the hub's JSON")
	// Allow the id before or after the flags.
	rest := args[1:]
	var id string
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		id, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		return 2
	}
	if id == "" && fs.NArg() == 1 {
		id = fs.Arg(0)
	}
	if id == "" {
		fmt.Fprintln(stderr, "rat device: a device id is required")
		return 2
	}
	method, path := http.MethodGet, "/v1/devices/"+id
	if verb != "show" {
		method, path = http.MethodPost, path+"/"+verb
	}
	b, code, err := h.do(method, path, nil)
	if err != nil {
		fmt.Fprintln(stderr, "rat device:", err)
		return 2
	}
	if code != 200 {
		fmt.Fprintf(stderr, "rat device: %d %s", code, b)
		return 1
	}
	if *asJSON || verb != "show" {
		stdout.Write(b)
		return 0
	}
	var d struct {
		deviceRow
		Fleet    string `json:"fleet"`
		TOFU     bool   `json:"tofu"`
		EKIssuer string `json:"ek_issuer"`
		BootID   string `json:"boot_id"`
		Policy   string `json:"policy_digest"`
		Events   []struct {
			Time   time.Time `json:"time"`
			Kind   string    `json:"kind"`
			Seq    uint64    `json:"seq"`
			Detail string    `json:"detail"`
			Event  *struct {
				ID      string `json:"id"`
				Context string `json:"context"`
			} `json:"event"`
		} `json:"events"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		fmt.Fprintln(stderr, "rat device:", err)
		return 2
	}
	fmt.Fprintf(stdout, "device %s (fleet %s, group %s)\nstate: %s\n", d.ID, d.Fleet, d.Group, d.State)
	if d.Reason != "" {
		fmt.Fprintf(stdout, "reason: %s\n", d.Reason)
	}
	ek := "EK certificate verified (" + d.EKIssuer + ")"
	if d.TOFU {
		ek = "EK trusted on first use (no certificate verified)"
	}
	fmt.Fprintf(stdout, "identity: %s\nquotes: %d, IMA entries this boot: %d, boot %s\npolicy: %s\nhistory:\n", ek, d.Quotes, d.IMAEntries, d.BootID, d.Policy)
	for _, e := range d.Events {
		line := e.Detail
		if e.Event != nil {
			line = strings.TrimSpace(e.Detail + " " + e.Event.ID + ": " + e.Event.Context)
		}
		fmt.Fprintf(stdout, "  %s  %-8s seq %-5d %s\n", e.Time.Format("15:04:05.000"), e.Kind, e.Seq, line)
	}
	return 0
}

func policyPush(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rat policy push", flag.ContinueOnError)
	fs.SetOutput(stderr)
	h := addHubFlags(fs)
	group := fs.String("group", "", "policy group")
	bundle := fs.String("bundle", "", "Sigstore bundle of the policy (cosign sign-blob --bundle)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 || *group == "" {
		fmt.Fprintln(stderr, "usage: rat policy push --group G [--bundle B] POLICY")
		return 2
	}
	doc, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(stderr, "rat policy push:", err)
		return 2
	}
	// Exact bytes, base64: the signature covers the policy byte for byte.
	body := map[string][]byte{"policy_base64": doc}
	if *bundle != "" {
		b, err := os.ReadFile(*bundle)
		if err != nil {
			fmt.Fprintln(stderr, "rat policy push:", err)
			return 2
		}
		body["bundle_base64"] = b
	}
	req, _ := json.Marshal(body)
	b, code, err := h.do(http.MethodPut, "/v1/groups/"+*group+"/policy", req)
	if err != nil {
		fmt.Fprintln(stderr, "rat policy push:", err)
		return 2
	}
	if code != 200 {
		fmt.Fprintf(stderr, "rat policy push: refused (%d): %s", code, b)
		return 1
	}
	stdout.Write(b)
	return 0
}
