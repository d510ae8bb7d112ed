package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

func init() {
	register(command{name: "ingest", summary: "judge an offline bundle from a device's outbox (rat-agent export) as if it had arrived live", run: ingestCmd})
}

func ingestCmd(args []string) int {
	fs := flag.NewFlagSet("ingest", flag.ContinueOnError)
	hub := fs.String("hub", os.Getenv("RAT_HUB"), "running hub's HTTP API URL (or RAT_HUB)")
	tokenFile := fs.String("token-file", os.Getenv("RAT_TOKEN_FILE"), "operator token file (or RAT_TOKEN_FILE)")
	device := fs.String("device", "", "device id")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 || *device == "" || *hub == "" {
		fmt.Fprintln(os.Stderr, "usage: rat-hub ingest --hub URL --device ID bundle.cbor")
		return 2
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "rat-hub ingest:", err)
		return 2
	}
	defer f.Close()
	tok := os.Getenv("RAT_TOKEN")
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "rat-hub ingest:", err)
			return 2
		}
		tok = strings.TrimSpace(string(b))
	}
	req, err := http.NewRequest(http.MethodPost, strings.TrimRight(*hub, "/")+"/v1/devices/"+url.PathEscape(*device)+"/ingest", f)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rat-hub ingest:", err)
		return 2
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/cbor-seq")
	resp, err := (&http.Client{Timeout: 10 * time.Minute}).Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rat-hub ingest:", err)
		return 1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	os.Stdout.Write(b)
	if resp.StatusCode != http.StatusOK {
		return 1
	}
	return 0
}
