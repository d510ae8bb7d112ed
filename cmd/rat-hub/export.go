package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ratatouille/rat/hub/export"
	"github.com/ratatouille/rat/hub/store"
)

func init() {
	register(command{name: "export", summary: "export a device's evidence as an offline bundle for rat-audit", run: exportCmd})
}

// exportCmd asks a running hub over HTTP (--hub), or reads a stopped hub's
// data directory (--data: bbolt allows one process at a time).
func exportCmd(args []string) int {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	hub := fs.String("hub", os.Getenv("RAT_HUB"), "running hub's HTTP API URL (or RAT_HUB)")
	tokenFile := fs.String("token-file", os.Getenv("RAT_TOKEN_FILE"), "operator token file (or RAT_TOKEN_FILE)")
	data := fs.String("data", "", "a stopped hub's data directory, instead of --hub")
	fleet := fs.String("fleet", "default", "fleet (with --data)")
	device := fs.String("device", "", "device id")
	from := fs.String("from", "", "span start (RFC 3339); the span widens to whole boots")
	to := fs.String("to", "", "span end (RFC 3339)")
	out := fs.String("o", "bundle.cbor", "output file")
	records := fs.String("records", "compact", "record form: compact, or delta/full for a rat-audit older than compact/delta records")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if _, err := export.RecordOption(*records); err != nil {
		fmt.Fprintln(os.Stderr, "rat-hub export: --records:", err)
		return 2
	}
	if *device == "" {
		fmt.Fprintln(os.Stderr, "rat-hub export: --device is required")
		return 2
	}
	var err error
	if *data != "" {
		err = exportLocal(*data, *fleet, *device, *from, *to, *records, *out)
	} else {
		err = exportHTTP(*hub, *tokenFile, *device, *from, *to, *records, *out)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rat-hub export:", err)
		return 1
	}
	fmt.Fprintln(os.Stderr, "wrote", *out)
	return 0
}

func parseSpan(from, to string) (time.Time, time.Time, error) {
	var f, t time.Time
	var err error
	if from != "" {
		if f, err = time.Parse(time.RFC3339, from); err != nil {
			return f, t, fmt.Errorf("--from: %w", err)
		}
	}
	if to != "" {
		if t, err = time.Parse(time.RFC3339, to); err != nil {
			return f, t, fmt.Errorf("--to: %w", err)
		}
	}
	return f, t, nil
}

func exportLocal(data, fleet, device, from, to, records, out string) error {
	f, t, err := parseSpan(from, to)
	if err != nil {
		return err
	}
	st, err := store.OpenBolt(filepath.Join(data, "hub.db"))
	if err != nil {
		return fmt.Errorf("%w (is the hub still running? use --hub)", err)
	}
	defer st.Close()
	key, err := export.LoadOrCreateKey(filepath.Join(data, "hub-key.pem"))
	if err != nil {
		return err
	}
	w, err := os.Create(out)
	if err != nil {
		return err
	}
	if err := export.Write(w, st, fleet+"/"+device, export.Options{From: f, To: t, Hub: "rat-hub/" + fleet, Key: key, Records: records}); err != nil {
		w.Close()
		os.Remove(out)
		return err
	}
	return w.Close()
}

func exportHTTP(hub, tokenFile, device, from, to, records, out string) error {
	if hub == "" {
		return errors.New("--hub (or RAT_HUB) or --data is required")
	}
	tok := os.Getenv("RAT_TOKEN")
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return err
		}
		tok = strings.TrimSpace(string(b))
	}
	q := url.Values{}
	if from != "" {
		q.Set("from", from)
	}
	if to != "" {
		q.Set("to", to)
	}
	if records != "" && records != "compact" {
		q.Set("records", records)
	}
	u := strings.TrimRight(hub, "/") + "/v1/devices/" + url.PathEscape(device) + "/bundle"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := (&http.Client{Timeout: 5 * time.Minute}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("hub: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	w, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}
