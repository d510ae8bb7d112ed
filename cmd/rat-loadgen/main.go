// Command rat-loadgen drives a hub with simulated devices that publish real
// TPM quotes and IMA deltas over MQTT, and reports accepted attestations per
// second, ack latency and what generating the load cost.
//
//	rat-loadgen -devices 1000 -records 60 -broker embedded
//	rat-loadgen -devices 1000 -records 60 -broker mosquitto
//
// Phases: (1) pre-generation: per device, a fresh TPM simulator, its own EK
// and AK, enrollment by credential activation against the hub, then all its
// records quoted up front (see gen.go for why they share the enrollment
// nonce); (2) the run: every record published, each ack timed. Only phase 2
// is the hub's throughput.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ratatouille/rat/hub/server"
	"github.com/ratatouille/rat/hub/store"
	"github.com/ratatouille/rat/hub/verifier"
)

const fleet = "default"

type options struct {
	Devices, Records, Delta, Rate int
	Broker                        string // embedded | mosquitto | tcp://host:port (external, already running)
	Hub                           string // child | inproc
	HubProfile, HubArgs           string
	HubMemProfile                 string
	HubCPUs                       string // "" (not pinned) or a CPU list for the hub child (and Mosquitto); the generator takes the others
	QoS                           int    // of the evidence publishes
	Timeout                       time.Duration
	Out                           io.Writer
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "calibrate" {
		if err := calibrateMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "rat-loadgen calibrate:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "hub" {
		if err := hubMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "rat-loadgen hub:", err)
			os.Exit(1)
		}
		return
	}
	var o options
	flag.IntVar(&o.Devices, "devices", 200, "simulated devices, each with its own EK and AK")
	flag.IntVar(&o.Records, "records", 60, fmt.Sprintf("pre-generated quoted records per device (1..%d, the hub's nonce window)", maxRecords))
	flag.IntVar(&o.Delta, "delta", 2, "new IMA entries per record")
	flag.IntVar(&o.Rate, "rate", 0, "open-loop records/s in total (0: closed loop, each device sends its next record on its ack)")
	flag.StringVar(&o.Broker, "broker", "embedded", "embedded (the hub's mochi broker), mosquitto (started here on a free port), or tcp://host:port")
	flag.StringVar(&o.Hub, "hub", "child", "child (the hub runs as a child process, so its CPU is measured apart) or inproc")
	flag.StringVar(&o.HubProfile, "hub-cpuprofile", "", "write the hub's CPU profile of the run phase to this file")
	flag.StringVar(&o.HubMemProfile, "hub-memprofile", "", "write the hub's heap profile (allocations of the run phase: go tool pprof -sample_index=alloc_space) to this file")
	flag.StringVar(&o.HubCPUs, "hub-cpus", "", "pin the hub child (and Mosquitto) to these CPUs (e.g. 1 or 2-3) and the generator to the others, so the hub's rate is that of dedicated cores")
	flag.IntVar(&o.QoS, "qos", 0, "MQTT QoS of the evidence publishes (0, as the agent; 1 adds the broker's PUBACK per record; the hub's ack confirms delivery either way)")
	flag.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "give up the run phase after this long")
	flag.Parse()
	o.Out = os.Stdout
	r, cost, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rat-loadgen:", err)
		os.Exit(1)
	}
	report(os.Stdout, o, r, cost)
	if r.Rejected > 0 || r.NotTrusted > 0 || int(r.Accepted) != r.Sent {
		os.Exit(2)
	}
}

func report(w io.Writer, o options, r *result, g genCost) {
	fmt.Fprintf(w, "rat-loadgen: %d devices × %d records (%d IMA entries/record), broker %s, hub %s, %s, GOMAXPROCS %d, %d CPUs\n",
		o.Devices, o.Records, o.Delta, r.Broker, o.Hub, r.Mode, runtime.GOMAXPROCS(0), runtime.NumCPU())
	if o.HubCPUs != "" {
		fmt.Fprintf(w, "CPUs: hub%s on %s, generator on the others (sched_setaffinity)\n", map[bool]string{true: " and Mosquitto", false: ""}[o.Broker == "mosquitto"], o.HubCPUs)
	}
	fmt.Fprintf(w, "pre-generation: %d records (%d IMA entries, %d bytes, %.0f B/record) in %s: simulator+EK+AK %s, enrollment %s, quotes %s (%.2f ms/quote)\n",
		g.Records, g.IMAEntries, g.Bytes, float64(g.Bytes)/float64(max(g.Records, 1)), g.Wall.Round(time.Millisecond),
		g.SimSetup.Round(time.Millisecond), g.Enroll.Round(time.Millisecond), g.Quote.Round(time.Millisecond),
		float64(g.Quote.Microseconds())/1000/float64(max(g.Records, 1)))
	fmt.Fprintf(w, "| metric | value |\n|---|---|\n")
	fmt.Fprintf(w, "| records sent / accepted / rejected | %d / %d / %d |\n", r.Sent, r.Accepted, r.Rejected)
	fmt.Fprintf(w, "| acks with state TRUSTED / other | %d / %d |\n", r.Trusted, r.NotTrusted)
	fmt.Fprintf(w, "| run wall time | %s |\n", r.Wall.Round(time.Millisecond))
	fmt.Fprintf(w, "| accepted attestations/s | %.0f |\n", r.Rate)
	fmt.Fprintf(w, "| devices at a 10 s heartbeat | %.0f |\n", r.Rate*10)
	fmt.Fprintf(w, "| ack latency p50 / p99 / max | %s / %s / %s |\n", r.P50.Round(10*time.Microsecond), r.P99.Round(10*time.Microsecond), r.Max.Round(10*time.Microsecond))
	per := func(d time.Duration) string {
		if r.Accepted == 0 {
			return "-"
		}
		return fmt.Sprintf("%s (%.1f µs/record, %.0f%% of one core)", d.Round(time.Millisecond), float64(d.Nanoseconds())/1e3/float64(r.Accepted), 100*d.Seconds()/max(r.Wall.Seconds(), 1e-9))
	}
	label := "generator CPU (publishing + ack handling)"
	if o.Hub == "inproc" {
		label = "generator + hub CPU (in-process)"
	}
	fmt.Fprintf(w, "| %s | %s |\n", label, per(r.GenCPU))
	if o.Hub == "child" {
		fmt.Fprintf(w, "| hub CPU (verify, store, broker if embedded) | %s |\n", per(r.HubCPU))
	}
	if r.BrokerCPU > 0 {
		fmt.Fprintf(w, "| mosquitto CPU | %s |\n", per(r.BrokerCPU))
	}
	if r.BareVerify > 0 && r.Accepted > 0 && o.Hub == "child" {
		perRecord := float64(r.HubCPU.Nanoseconds()) / float64(r.Accepted)
		bare := float64(r.BareVerify.Nanoseconds())
		fmt.Fprintf(w, "| bare ECDSA P-256 verify on the hub's CPUs (before, after the run) | %.1f µs (%.1f, %.1f) |\n", bare/1e3,
			float64(r.BareBefore.Nanoseconds())/1e3, float64(r.BareAfter.Nanoseconds())/1e3)
		fmt.Fprintf(w, "| hub CPU per record ÷ bare verify (target 2: ≤ 2.5) | %.2f |\n", perRecord/bare)
		if r.BrokerCPU > 0 {
			fmt.Fprintf(w, "| hub + mosquitto CPU per record ÷ bare verify | %.2f |\n", float64((r.HubCPU+r.BrokerCPU).Nanoseconds())/float64(r.Accepted)/bare)
		}
	}
	if r.FirstProblem != "" {
		fmt.Fprintf(w, "first problem: %s\n", r.FirstProblem)
	}
}

// run does both phases with the hub and broker o asks for.
func run(o options) (*result, genCost, error) {
	if o.Devices < 1 {
		return nil, genCost{}, errors.New("need at least one device")
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	dir, err := os.MkdirTemp("", "rat-loadgen-hub-")
	if err != nil {
		return nil, genCost{}, err
	}
	defer os.RemoveAll(dir)
	r := &result{Devices: o.Devices, PerDevice: o.Records, Offered: o.Rate, Mode: "closed loop (1 record in flight per device)"}
	if o.Rate > 0 {
		r.Mode = fmt.Sprintf("open loop at %d records/s", o.Rate)
	}
	var external string
	var brokerPID int
	switch {
	case o.Broker == "embedded":
		r.Broker = "embedded mochi-mqtt"
	case o.Broker == "mosquitto":
		url, pid, stop, err := startMosquitto(dir)
		if err != nil {
			return nil, genCost{}, err
		}
		defer stop()
		external, brokerPID = url, pid
		r.Broker = "mosquitto " + url + " (allow_anonymous, bench only)"
	case strings.HasPrefix(o.Broker, "tcp://"):
		external = o.Broker
		r.Broker = "external " + external
	default:
		return nil, genCost{}, fmt.Errorf("unknown broker %q", o.Broker)
	}

	var url string
	var hubPID int
	switch o.Hub {
	case "inproc":
		if o.HubCPUs != "" {
			return nil, genCost{}, errors.New("-hub-cpus needs -hub child")
		}
		st, err := store.OpenBolt(filepath.Join(dir, "hub.db"))
		if err != nil {
			return nil, genCost{}, err
		}
		defer st.Close()
		s, err := server.Start(context.Background(), hubConfig(st, external))
		if err != nil {
			return nil, genCost{}, err
		}
		defer s.Close()
		if err := setBenchPolicy(s); err != nil {
			return nil, genCost{}, err
		}
		url = s.BrokerURL()
	case "child":
		var cpus, rest []int
		if o.HubCPUs != "" {
			if cpus, err = parseCPUs(o.HubCPUs); err != nil {
				return nil, genCost{}, err
			}
			if rest = otherCPUs(cpus); len(rest) == 0 {
				return nil, genCost{}, fmt.Errorf("-hub-cpus %s leaves no CPU for the generator", o.HubCPUs)
			}
		}
		u, pid, stop, err := startChildHub(dir, external, o.HubProfile, o.HubMemProfile, o.HubCPUs)
		if err != nil {
			return nil, genCost{}, err
		}
		defer stop()
		url, hubPID = u, pid
		if cpus != nil {
			restore, err := pinned()
			if err != nil {
				return nil, genCost{}, err
			}
			defer restore()
			if err := pinSelf(rest); err != nil {
				return nil, genCost{}, err
			}
			if brokerPID != 0 {
				set := cpuSet(cpus)
				if err := unix.SchedSetaffinity(brokerPID, &set); err != nil {
					return nil, genCost{}, fmt.Errorf("pin mosquitto: %w", err)
				}
			}
		}
	default:
		return nil, genCost{}, fmt.Errorf("unknown hub mode %q", o.Hub)
	}

	total := o.Devices * o.Records
	c := newCollector(total)
	devs, cost, err := pregenerate(url, "lg", o.Devices, o.Records, o.Delta, c.onAck)
	if err != nil {
		return nil, cost, err
	}
	defer func() {
		for _, d := range devs {
			d.c.Disconnect(20)
		}
	}()
	fmt.Fprintf(o.Out, "pre-generated %d records for %d devices in %s; running\n", cost.Records, o.Devices, cost.Wall.Round(time.Millisecond))

	profiling := (o.HubProfile != "" || o.HubMemProfile != "") && hubPID != 0
	if profiling {
		_ = signalProfile(dir, "start")
	}
	if hubPID != 0 {
		if r.BareBefore, err = calibrate(o.HubCPUs); err != nil {
			return nil, cost, err
		}
	}
	cpu0, hub0, br0 := selfCPU(), procCPU(hubPID), procCPU(brokerPID)
	t0 := time.Now()
	r.Sent, err = publishAll(devs, o.Rate, byte(o.QoS), c, o.Timeout)
	if err != nil {
		return nil, cost, err
	}
	select {
	case <-c.done:
	case <-time.After(o.Timeout):
	}
	r.finish(c, t0)
	r.GenCPU, r.HubCPU, r.BrokerCPU = selfCPU()-cpu0, procCPU(hubPID)-hub0, procCPU(brokerPID)-br0
	if profiling {
		_ = signalProfile(dir, "stop")
	}
	if hubPID != 0 {
		if r.BareAfter, err = calibrate(o.HubCPUs); err != nil {
			return nil, cost, err
		}
		r.BareVerify = (r.BareBefore + r.BareAfter) / 2
	}
	return r, cost, nil
}

// hubConfig is the hub as the bench runs it: TOFU enrollment (simulator EKs
// have no manufacturer certificate) and the baseline policy the first
// device's log produces (unsigned), which is all the bench changes from the
// defaults; every evidence check is the hub's normal one.
func hubConfig(st store.Store, external string) server.Config {
	return server.Config{Store: st, Fleet: fleet, MQTT: external, EmbeddedAddr: "127.0.0.1:0",
		Verifier:                    verifier.Config{AllowTOFUUnsafe: true},
		AllowUnsignedPoliciesUnsafe: true,
		Log:                         slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
}

// hubMain is the child hub: it prints the broker URL, then serves until its
// standard input closes. A profile is taken between "start" and "stop"
// control files so that it covers the run phase only.
func hubMain(args []string) error {
	fs := flag.NewFlagSet("hub", flag.ContinueOnError)
	dir := fs.String("dir", "", "data directory")
	external := fs.String("mqtt", "", "external broker")
	prof := fs.String("cpuprofile", "", "CPU profile file")
	memProf := fs.String("memprofile", "", "heap profile file (allocations between start and stop)")
	cpuList := fs.String("cpus", "", "pin the hub to these CPUs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuList != "" {
		cpus, err := parseCPUs(*cpuList)
		if err != nil {
			return err
		}
		if err := pinSelf(cpus); err != nil {
			return err
		}
	}
	server.SetGCDefaults(nil) // as rat-hub serve does
	st, err := store.OpenBolt(filepath.Join(*dir, "hub.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	s, err := server.Start(context.Background(), hubConfig(st, *external))
	if err != nil {
		return err
	}
	defer s.Close()
	if err := setBenchPolicy(s); err != nil {
		return err
	}
	fmt.Printf("BROKER %s\n", s.BrokerURL())
	if *prof != "" || *memProf != "" {
		go func() {
			ctl := filepath.Join(*dir, "profile")
			var f *os.File
			started := false
			for {
				time.Sleep(20 * time.Millisecond)
				b, _ := os.ReadFile(ctl)
				switch strings.TrimSpace(string(b)) {
				case "start":
					if !started {
						started = true
						// The heap profile's counts are cumulative: the
						// pre-generation phase is subtracted with
						// pprof -base, or ignored (it is small: enrollment).
						if *memProf != "" {
							writeHeap(*memProf + ".base")
						}
						if *prof != "" {
							if f, err = os.Create(*prof); err == nil {
								_ = pprof.StartCPUProfile(f)
							}
						}
						if tf, err := os.Create(*prof + ".trace"); err == nil && os.Getenv("RAT_LOADGEN_TRACE") != "" {
							_ = trace.Start(tf)
							defer tf.Close()
						}
					}
				case "stop":
					if started {
						if f != nil {
							pprof.StopCPUProfile()
							trace.Stop()
							f.Close()
						}
						if *memProf != "" {
							writeHeap(*memProf)
						}
						_ = os.WriteFile(ctl, []byte("done"), 0o600)
						return
					}
				}
			}
		}()
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

// writeHeap writes the heap profile (allocations since the start, and
// what is live at the last GC) to path.
func writeHeap(path string) {
	f, err := os.Create(path)
	if err != nil {
		return
	}
	defer f.Close()
	_ = pprof.Lookup("allocs").WriteTo(f, 0)
}

func signalProfile(dir, what string) error {
	ctl := filepath.Join(dir, "profile")
	if err := os.WriteFile(ctl, []byte(what), 0o600); err != nil {
		return err
	}
	if what == "stop" {
		for i := 0; i < 100; i++ {
			if b, _ := os.ReadFile(ctl); strings.TrimSpace(string(b)) == "done" {
				return nil
			}
			time.Sleep(20 * time.Millisecond)
		}
		return errors.New("hub did not write its profile")
	}
	time.Sleep(50 * time.Millisecond)
	return nil
}

func startChildHub(dir, external, profile, memProfile, cpus string) (string, int, func(), error) {
	self, err := os.Executable()
	if err != nil {
		return "", 0, nil, err
	}
	args := []string{"hub", "-dir", dir}
	if external != "" {
		args = append(args, "-mqtt", external)
	}
	if profile != "" {
		args = append(args, "-cpuprofile", profile)
	}
	if memProfile != "" {
		args = append(args, "-memprofile", memProfile)
	}
	if cpus != "" {
		args = append(args, "-cpus", cpus)
	}
	cmd := exec.Command(self, args...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", 0, nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", 0, nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", 0, nil, err
	}
	stop := func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if u, ok := strings.CutPrefix(sc.Text(), "BROKER "); ok {
			go func() { _, _ = io.Copy(io.Discard, out) }()
			return u, cmd.Process.Pid, stop, nil
		}
	}
	stop()
	return "", 0, nil, errors.New("the hub child exited before it was ready")
}

// startMosquitto runs a real Mosquitto on a free loopback port. The bench
// config allows anonymous clients and sets no ACL (the embedded broker's ACL
// is the hub's; Mosquitto's ACL is tested in test/integration), and lifts
// the per-client queue and in-flight bounds so that the broker does not drop
// QoS 1 messages to the hub's single subscription under load.
func startMosquitto(dir string) (string, int, func(), error) {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		return "", 0, nil, fmt.Errorf("mosquitto not installed: %w", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", 0, nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	conf := filepath.Join(dir, "mosquitto.conf")
	body := "listener " + strconv.Itoa(port) + " 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\nmax_inflight_messages 0\nmax_packet_size 200000\npersistence false\nlog_dest stderr\nlog_type error\n"
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return "", 0, nil, err
	}
	cmd := exec.Command(bin, "-c", conf)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", 0, nil, err
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return "tcp://" + addr, cmd.Process.Pid, stop, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	return "", 0, nil, errors.New("mosquitto did not start listening")
}

// procCPU is a process's user+system CPU time from /proc (0 if unknown).
func procCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	stt, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+stt) * time.Second / 100 // USER_HZ
}

const benchGroup = "loadgen"

func setBenchPolicy(s *server.Server) error {
	doc, err := benchPolicy()
	if err != nil {
		return err
	}
	_, err = s.SetPolicy(benchGroup, doc, nil, "loadgen", "")
	return err
}
