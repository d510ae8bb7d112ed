package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ratatouille/rat/hub/api"
	"github.com/ratatouille/rat/hub/export"
	"github.com/ratatouille/rat/hub/revoke"
	"github.com/ratatouille/rat/hub/server"
	"github.com/ratatouille/rat/hub/store"
	"github.com/ratatouille/rat/hub/verifier"
)

func init() {
	register(command{name: "serve", summary: "run the hub", run: serve})
}

// Extension points for other hub features (Git webhook, tokens): each adds
// itself in its own file.
var (
	serveFlags []func(fs *flag.FlagSet)
	serveHooks []func(ctx context.Context, h *hubRuntime) error
)

type hubRuntime struct {
	Server  *server.Server
	API     *api.API
	Store   store.Store
	DataDir string
	Log     *slog.Logger
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func serve(args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var webhooks, execs multi
	data := fs.String("data", "./rat-hub-data", "data directory (bbolt store)")
	httpAddr := fs.String("http", "127.0.0.1:8080", "HTTP API listen address (port 0: any free port)")
	mqttListen := fs.String("mqtt-listen", "127.0.0.1:1883", "embedded MQTT broker listen address (port 0: any free port)")
	mqttURL := fs.String("mqtt", "", "use this external MQTT broker (tcp://host:port) instead of the embedded one")
	mqttUser := fs.String("mqtt-user", "rat-hub", "username on the external broker")
	mqttPassFile := fs.String("mqtt-password-file", "", "file holding the external broker password")
	fleet := fs.String("fleet", "default", "fleet id")
	tokenFile := fs.String("token-file", "", "file holding the operator API token (created with a random token if missing)")
	ekRoots := fs.String("ek-roots", "", "directory of PEM TPM manufacturer root certificates")
	tofu := fs.Bool("ek-tofu-unsafe", false, "enroll devices whose EK certificate does not verify, trusting the EK on first use (recorded per device)")
	unsigned := fs.Bool("allow-unsigned-policies-unsafe", false, "activate runtime policies without a signature check")
	stale := fs.Duration("stale-after", 30*time.Second, "mark a device STALE after this long without verified evidence")
	tlsListen := fs.String("mqtt-tls-listen", "", "embedded broker TLS listener for devices (e.g. 0.0.0.0:8883); the plain one then serves only the hub")
	tlsCert := fs.String("mqtt-tls-cert", "", "PEM certificate of the TLS listener")
	tlsKey := fs.String("mqtt-tls-key", "", "PEM key of the TLS listener")
	clientCA := fs.String("mqtt-client-ca", "", "PEM CA of device client certificates (required: username = certificate CN)")
	addrFile := fs.String("addr-file", "", "write the actual listen addresses as JSON to this file")
	retention := fs.Duration("evidence-retention", 0, "delete evidence records stored longer ago than this (e.g. 2160h), except each device's current boot; 0 keeps every record")
	deviceCache := fs.Int("device-cache", 100000, "devices kept decoded in memory, write-through (≈ 8 KB each; 0: none)")
	fs.Var(&webhooks, "revoke-webhook", "POST revocation events to this URL (repeatable); secret from RAT_WEBHOOK_SECRET")
	fs.Var(&execs, "revoke-exec", "run this program on revocation (repeatable; event in env and stdin)")
	for _, f := range serveFlags {
		f(fs)
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	server.SetGCDefaults(log)
	if err := os.MkdirAll(*data, 0o700); err != nil {
		log.Error("data directory", "err", err)
		return 1
	}
	st, err := store.OpenBolt(filepath.Join(*data, "hub.db"))
	if err != nil {
		log.Error("store", "err", err)
		return 1
	}
	defer st.Close()
	vc := verifier.Config{AllowTOFUUnsafe: *tofu}
	if *ekRoots != "" {
		pool, n, err := loadPEMDir(*ekRoots)
		if err != nil {
			log.Error("EK roots", "err", err)
			return 1
		}
		log.Info("EK roots loaded", "count", n)
		vc.EKRoots = pool
	}
	if vc.EKRoots == nil && !*tofu {
		log.Warn("no --ek-roots and no --ek-tofu-unsafe: every enrollment will be refused")
	}
	var actions []revoke.Action
	for _, u := range webhooks {
		actions = append(actions, &revoke.Webhook{URL: u, Secret: []byte(os.Getenv("RAT_WEBHOOK_SECRET"))})
	}
	for _, x := range execs {
		actions = append(actions, &revoke.Exec{Path: x})
	}
	pass := ""
	if *mqttPassFile != "" {
		b, err := os.ReadFile(*mqttPassFile)
		if err != nil {
			log.Error("mqtt password", "err", err)
			return 1
		}
		pass = strings.TrimSpace(string(b))
	}
	token, err := operatorToken(*tokenFile, *data)
	if err != nil {
		log.Error("operator token", "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	key, err := export.LoadOrCreateKey(filepath.Join(*data, "hub-key.pem"))
	if err != nil {
		log.Error("hub key", "err", err)
		return 1
	}
	if err := os.WriteFile(filepath.Join(*data, "hub-key.pub.pem"), key.PublicPEM(), 0o644); err != nil {
		log.Error("hub key", "err", err)
		return 1
	}
	cfg := server.Config{Key: key, Store: st, Verifier: vc, Fleet: *fleet, MQTT: *mqttURL, MQTTUser: *mqttUser, MQTTPassword: pass,
		EmbeddedAddr: *mqttListen, StaleAfter: *stale, Actions: actions, AllowUnsignedPoliciesUnsafe: *unsigned, Log: log,
		DeviceCache: *deviceCache, EvidenceRetention: *retention}
	if *deviceCache <= 0 {
		cfg.DeviceCache = -1 // none (server.Config takes 0 for its default)
	}
	if *tlsListen != "" {
		tc, err := brokerTLS(*tlsCert, *tlsKey, *clientCA)
		if err != nil {
			log.Error("mqtt tls", "err", err)
			return 1
		}
		cfg.EmbeddedTLSAddr, cfg.EmbeddedTLS = *tlsListen, tc
	}
	for _, f := range configHooks {
		if err := f(&cfg); err != nil {
			log.Error("config", "err", err)
			return 1
		}
	}
	srv, err := server.Start(ctx, cfg)
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	defer srv.Close()
	a, err := api.New(srv, token)
	if err != nil {
		log.Error("api", "err", err)
		return 1
	}
	rt := &hubRuntime{Server: srv, API: a, Store: st, DataDir: *data, Log: log}
	for _, h := range serveHooks {
		if err := h(ctx, rt); err != nil {
			log.Error("start", "err", err)
			return 1
		}
	}
	ln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		log.Error("http listen", "err", err)
		return 1
	}
	hs := &http.Server{Handler: a, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http", "err", err)
		}
	}()
	addrs := map[string]string{"http": "http://" + ln.Addr().String(), "mqtt": srv.BrokerURL()}
	if *addrFile != "" {
		b, _ := json.Marshal(addrs)
		if err := os.WriteFile(*addrFile+".tmp", b, 0o644); err == nil {
			_ = os.Rename(*addrFile+".tmp", *addrFile)
		}
	}
	log.Info("rat-hub serving", "http", addrs["http"], "mqtt", addrs["mqtt"], "fleet", *fleet)
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = hs.Shutdown(sctx)
	return 0
}

func brokerTLS(cert, key, clientCA string) (*tls.Config, error) {
	c, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, fmt.Errorf("--mqtt-tls-cert/--mqtt-tls-key: %w", err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{c}}
	if clientCA == "" {
		return nil, errors.New("--mqtt-client-ca is required: devices authenticate with client certificates")
	}
	pem, err := os.ReadFile(clientCA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--mqtt-client-ca %s: no certificates", clientCA)
	}
	tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	return tc, nil
}

// configHooks let other files adjust the server config (policy signature
// checks, say) from their flags.
var configHooks []func(*server.Config) error

func loadPEMDir(dir string) (*x509.CertPool, int, error) {
	pool := x509.NewCertPool()
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, 0, err
	}
	n := 0
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, 0, err
		}
		if pool.AppendCertsFromPEM(b) {
			n++
		}
	}
	if n == 0 {
		return nil, 0, fmt.Errorf("no PEM certificates in %s", dir)
	}
	return pool, n, nil
}

// operatorToken reads the token file, creating it with a random token when
// it does not exist (the token is never logged).
func operatorToken(path, data string) (string, error) {
	if path == "" {
		path = filepath.Join(data, "operator.token")
	}
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	tok := randomToken()
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", err
	}
	return tok, nil
}
