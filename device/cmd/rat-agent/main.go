// Command rat-agent is Ratatouille's device agent: it enrolls the device's
// TPM with the hub and attests continuously over MQTT (see package
// device/agent). It is a static binary with no cgo, built into device
// images (yocto/meta-ratatouille).
//
//	rat-agent run --hub mqtts://hub:8883 --device-id ID [--fleet F] [--group G] [--state DIR] ...
//	rat-agent run --config /etc/rat-agent/rat-agent.conf
//	rat-agent version
//
// A config file holds "key = value" lines whose keys are the long flag
// names; flags given on the command line win.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ratatouille/rat/device/agent"
	"github.com/ratatouille/rat/device/imasrc"
	"github.com/ratatouille/rat/device/outbox"
	"github.com/ratatouille/rat/device/tpm"
)

var version = "dev"

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	switch os.Args[1] {
	case "run":
		if err := run(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "rat-agent:", err)
			os.Exit(1)
		}
	case "export":
		if err := export(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "rat-agent:", err)
			os.Exit(1)
		}
	case "version":
		fmt.Println("rat-agent", version)
	case "-h", "--help", "help":
		usage()
	default:
		usage()
		os.Exit(2)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: rat-agent run [flags] | rat-agent export [--state DIR] [--tpm T] -o bundle.cbor | rat-agent version")
}

func run(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var (
		config    = fs.String("config", "", "config file of `key = value` lines (keys are flag names)")
		hub       = fs.String("hub", "", "MQTT broker URL: tcp://host:port, or ssl:// / mqtts:// for TLS")
		serial    = fs.String("serial", "", "carry MQTT over this serial device (virtio-serial) instead of TCP")
		deviceID  = fs.String("device-id", "", "device id (default: the host name)")
		fleet     = fs.String("fleet", "default", "fleet id")
		group     = fs.String("group", "default", "policy group")
		tpmAddr   = fs.String("tpm", "", "TPM: a device path (default /dev/tpmrm0, then /dev/tpm0) or tcp://host:port (swtpm)")
		imaDir    = fs.String("ima-dir", "/sys/kernel/security/ima", "IMA securityfs directory")
		imaFile   = fs.String("ima-file", "", "read a binary measurement list from this file instead of securityfs (tests)")
		eventLog  = fs.String("event-log", "/sys/kernel/security/tpm0/binary_bios_measurements", "firmware event log")
		state     = fs.String("state", "/var/lib/rat-agent", "state directory (the outbox)")
		ca        = fs.String("ca", "", "PEM CA bundle for the broker's certificate")
		cert      = fs.String("cert", "", "PEM device client certificate")
		key       = fs.String("key", "", "PEM device client key")
		mqttPass  = fs.String("mqtt-password-file", "", "file holding the device's MQTT password (brokers such as Mosquitto with a password_file; the username is the device id)")
		baseline  = fs.Bool("baseline", false, "ask the hub to build the group's baseline policy from this device's log")
		poll      = fs.Duration("poll", 250*time.Millisecond, "how often to check the IMA measurement count")
		heartbeat = fs.Duration("heartbeat", 10*time.Second, "heartbeat quote interval")
		maxOutbox = fs.Int("max-outbox", 10000, "bound on pending records (heartbeats beyond it are thinned; IMA records never dropped)")
		pcrList   = fs.String("pcrs", "0,1,2,3,4,5,6,7,8,9,10", "sha256 PCRs to quote")
		release   = fs.String("release-file", "/etc/os-release", "os-release file whose IMAGE_VERSION or VERSION_ID names the running release")
		logLevel  = fs.String("log-level", "info", "debug, info, warn or error")
		akKind    = fs.String("ak", "ecc", "attestation key: ecc (P-256) or rsa (RSA-2048)")
		offline   = fs.Bool("offline", false, "attest with no hub (air-gapped): self-issued nonces, evidence kept for `rat-agent export`")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *config != "" {
		if err := loadConfig(fs, *config, set); err != nil {
			return err
		}
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("log level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	if *deviceID == "" {
		h, err := os.Hostname()
		if err != nil {
			return err
		}
		*deviceID = h
	}
	if *hub == "" && *serial == "" && !*offline {
		return errors.New("--hub (or --serial, or --offline) is required")
	}
	pcrs, err := parsePCRs(*pcrList)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*state, 0o700); err != nil {
		return err
	}
	ob, err := outbox.Open(filepath.Join(*state, "outbox.db"), outbox.WithMaxRecords(*maxOutbox))
	if err != nil {
		return err
	}
	defer ob.Close()
	t, err := tpm.Open(*tpmAddr)
	if err != nil {
		return err
	}
	defer t.Close()
	if noResourceManager(*tpmAddr) {
		// A killed predecessor's AK and EK are still loaded there.
		if err := t.FlushStale(); err != nil {
			return err
		}
	}
	var src imasrc.Source = imasrc.NewSecurityFS(*imaDir)
	if *imaFile != "" {
		src = imasrc.NewFile(*imaFile)
	}
	var ak tpm.AKKind
	switch *akKind {
	case "ecc":
		ak = tpm.AKECCP256
	case "rsa":
		ak = tpm.AKRSA2048
	default:
		return fmt.Errorf("--ak %q: want ecc or rsa", *akKind)
	}
	cfg := agent.Config{AK: ak,
		DeviceID: *deviceID, Fleet: *fleet, Group: *group, Broker: *hub,
		TPM: t, IMA: src, Outbox: ob, PCRs: pcrs, Poll: *poll, Heartbeat: *heartbeat, Baseline: *baseline,
		Release: func() string { return readRelease(*release) }, Log: log,
		EventLog: func() ([]byte, error) { return os.ReadFile(*eventLog) },
		Offline:  *offline,
	}
	if *offline {
		cfg.Broker = "offline"
	}
	if *mqttPass != "" {
		b, err := os.ReadFile(*mqttPass)
		if err != nil {
			return fmt.Errorf("--mqtt-password-file: %w", err)
		}
		cfg.Password = strings.TrimSpace(string(b))
	}
	if *serial != "" {
		path := *serial
		cfg.Dial = func(context.Context) (net.Conn, error) { return agent.OpenSerial(path) }
	}
	if *ca != "" || *cert != "" {
		tc, err := tlsConfig(*ca, *cert, *key)
		if err != nil {
			return err
		}
		cfg.TLS = tc
	}
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	defer a.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Info("rat-agent starting", "version", version, "device", *deviceID, "fleet", *fleet, "group", *group)
	return a.Run(ctx)
}

// noResourceManager reports whether the TPM at addr (as tpm.Open takes it)
// is used without the kernel's resource manager: swtpm over TCP, or a raw
// /dev/tpm0 (also what tpm.Open falls back to when there is no /dev/tpmrm0).
func noResourceManager(addr string) bool {
	switch {
	case strings.HasPrefix(addr, "tcp://"):
		return true
	case addr == "":
		_, err := os.Stat("/dev/tpmrm0")
		return err != nil
	default:
		return !strings.Contains(filepath.Base(addr), "tpmrm")
	}
}

func loadConfig(fs *flag.FlagSet, path string, set map[string]bool) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return fmt.Errorf("config %s:%d: want key = value", path, n)
		}
		k, v = strings.TrimSpace(k), strings.Trim(strings.TrimSpace(v), `"`)
		if k == "config" || fs.Lookup(k) == nil {
			return fmt.Errorf("config %s:%d: unknown key %q", path, n, k)
		}
		if set[k] {
			continue
		}
		if err := fs.Set(k, v); err != nil {
			return fmt.Errorf("config %s:%d: %s: %w", path, n, k, err)
		}
	}
	return sc.Err()
}

func parsePCRs(s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 0 || n > 23 {
			return nil, fmt.Errorf("--pcrs: bad PCR %q", p)
		}
		out = append(out, n)
	}
	return out, nil
}

func readRelease(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	vals := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			vals[k] = strings.Trim(v, `"'`)
		}
	}
	if v := vals["IMAGE_VERSION"]; v != "" {
		return v
	}
	return vals["VERSION_ID"]
}

func tlsConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca %s: no certificates", caFile)
		}
		tc.RootCAs = pool
	}
	if certFile != "" {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{c}
	}
	return tc, nil
}

// export writes the outbox (an offline device's whole history, or an
// online device's unacknowledged records) as an evidence bundle. The agent
// must not be running: the outbox is locked while it is.
func export(args []string) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	state := fs.String("state", "/var/lib/rat-agent", "state directory (the outbox)")
	tpmAddr := fs.String("tpm", "", "TPM (as for run)")
	deviceID := fs.String("device-id", "", "device id (default: the host name)")
	fleet := fs.String("fleet", "default", "fleet id")
	out := fs.String("o", "bundle.cbor", "output file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *deviceID == "" {
		h, err := os.Hostname()
		if err != nil {
			return err
		}
		*deviceID = h
	}
	ob, err := outbox.Open(filepath.Join(*state, "outbox.db"))
	if err != nil {
		return fmt.Errorf("%w (stop the agent first)", err)
	}
	defer ob.Close()
	t, err := tpm.Open(*tpmAddr)
	if err != nil {
		return err
	}
	defer t.Close()
	a, err := agent.New(agent.Config{DeviceID: *deviceID, Fleet: *fleet, Broker: "export", TPM: t, IMA: imasrc.NewSecurityFS(""), Outbox: ob})
	if err != nil {
		return err
	}
	defer a.Close()
	w, err := os.Create(*out)
	if err != nil {
		return err
	}
	n, err := a.Export(w)
	if err != nil {
		w.Close()
		os.Remove(*out)
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s: %d records\n", *out, n)
	return nil
}
