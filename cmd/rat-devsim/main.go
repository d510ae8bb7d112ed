// Command rat-devsim is a simulated device for the demo, tests and load
// runs: the real agent (device/agent) on the go-tpm-tools TPM simulator,
// with a simulated IMA source that measures files exactly as the kernel's
// IMA would (ima-ng entries, PCR 10 extended with their template hashes).
//
//	rat-devsim --hub tcp://127.0.0.1:PORT --device-id ID --state DIR \
//	    [--measure FILE ...] [--exec-spool FILE]
//
// At start it "boots": logs boot_aggregate and measures every --measure
// file (the device's baseline software). While running, each line appended
// to --exec-spool is a path that "executes" and is measured then, so a demo
// can run an unapproved binary on the device.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/ratatouille/rat/device/agent"
	"github.com/ratatouille/rat/device/imasim"
	"github.com/ratatouille/rat/device/imasrc"
	"github.com/ratatouille/rat/device/outbox"
	"github.com/ratatouille/rat/device/tpm"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "rat-devsim:", err)
		os.Exit(1)
	}
}

func run() error {
	var measure multi
	hub := flag.String("hub", "", "MQTT broker URL")
	id := flag.String("device-id", "sim-1", "device id")
	fleet := flag.String("fleet", "default", "fleet")
	group := flag.String("group", "default", "policy group")
	state := flag.String("state", "", "state directory (outbox, measurement list)")
	spool := flag.String("exec-spool", "", "file whose appended lines are paths that execute")
	baseline := flag.Bool("baseline", false, "enroll with --baseline")
	heartbeat := flag.Duration("heartbeat", 10*time.Second, "heartbeat interval")
	poll := flag.Duration("poll", 250*time.Millisecond, "IMA poll interval")
	release := flag.String("release", "", "release the device reports")
	passFile := flag.String("mqtt-password-file", "", "file holding the device's MQTT password (the username is the device id)")
	ekCA := flag.String("ek-ca", "", "manufacture the simulated TPM: a demo EK CA in this directory (roots/ca.pem for the hub's --ek-roots) certifies its EK")
	evlog := flag.String("event-log", "", "a real firmware event log: its events are extended into PCRs 0-9 at boot and the agent sends it")
	caOnly := flag.Bool("ek-ca-only", false, "only create the --ek-ca directory (so the hub can load its root first), then exit")
	flag.Var(&measure, "measure", "file measured at boot (repeatable; a directory measures its regular files)")
	flag.Parse()
	if *caOnly {
		if *ekCA == "" {
			return fmt.Errorf("--ek-ca-only needs --ek-ca")
		}
		_, _, err := loadOrCreateCA(*ekCA)
		return err
	}
	if *hub == "" || *state == "" {
		return fmt.Errorf("--hub and --state are required")
	}
	if err := os.MkdirAll(*state, 0o700); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("sim", *id)
	password := ""
	if *passFile != "" {
		b, err := os.ReadFile(*passFile)
		if err != nil {
			return fmt.Errorf("--mqtt-password-file: %w", err)
		}
		password = strings.TrimSpace(string(b))
	}
	sim, err := simulator.Get()
	if err != nil {
		return fmt.Errorf("simulator: %w", err)
	}
	tr := transport.FromReadWriteCloser(sim)
	t := tpm.New(tr)
	defer t.Close()
	var fwLog []byte
	if *evlog != "" {
		if fwLog, err = os.ReadFile(*evlog); err != nil {
			return err
		}
		if err := firmware(tr, fwLog); err != nil {
			return fmt.Errorf("firmware event log: %w", err)
		}
	}
	if *ekCA != "" {
		ek, err := t.CreateEK()
		if err != nil {
			return err
		}
		err = manufacture(tr, ek.PublicArea, *ekCA)
		ek.Close()
		if err != nil {
			return fmt.Errorf("manufacture: %w", err)
		}
	}
	logPath := filepath.Join(*state, "binary_runtime_measurements")
	ms, err := imasim.Open(t, logPath)
	if err != nil {
		return err
	}
	defer ms.Close()
	for _, m := range measure {
		if err := measurePath(ms, m); err != nil {
			return err
		}
	}
	// A simulated TPM starts afresh every run, so the outbox of an earlier
	// run belongs to another TPM; start clean.
	obPath := filepath.Join(*state, "outbox.db")
	_ = os.Remove(obPath)
	ob, err := outbox.Open(obPath)
	if err != nil {
		return err
	}
	defer ob.Close()
	bootID := fmt.Sprintf("sim-boot-%d", time.Now().UnixNano())
	a, err := agent.New(agent.Config{
		DeviceID: *id, Fleet: *fleet, Group: *group, Broker: *hub, TPM: t, IMA: imasrc.NewFile(logPath), Outbox: ob,
		BootID: func() (string, error) { return bootID, nil }, Release: func() string { return *release },
		Baseline: *baseline, Heartbeat: *heartbeat, Poll: *poll, Log: log, Password: password,
		EventLog: func() ([]byte, error) { return fwLog, nil },
	})
	if err != nil {
		return err
	}
	defer a.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *spool != "" {
		go watchSpool(ctx, *spool, ms, log)
	}
	return a.Run(ctx)
}

func measurePath(ms *imasim.Simulator, p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		_, err := ms.MeasureFile(p)
		return err
	}
	return filepath.WalkDir(p, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		_, err = ms.MeasureFile(path)
		return err
	})
}

// watchSpool measures each path appended to the spool file.
func watchSpool(ctx context.Context, path string, ms *imasim.Simulator, log *slog.Logger) {
	var off int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		if _, err := f.Seek(off, 0); err != nil {
			f.Close()
			continue
		}
		r := bufio.NewReader(f)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				break // an incomplete line waits for its newline
			}
			off += int64(len(line))
			p := strings.TrimSpace(line)
			if p == "" {
				continue
			}
			if _, err := ms.MeasureFile(p); err != nil {
				log.Error("measure", "path", p, "err", err)
			} else {
				log.Info("executed (measured)", "path", p)
			}
		}
		f.Close()
	}
}
