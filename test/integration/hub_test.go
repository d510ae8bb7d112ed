package integration

import (
	"bufio"
	"fmt"
	"github.com/ratatouille/rat/test/harness"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// hub is a running rat-hub process on an external broker.
type hub struct {
	harness.Hub
	data, logDir string
	args         []string
	proc         *harness.Proc
}

// startHub starts rat-hub serve with its store in data, on the broker at
// brokerURL as user rat-hub.
func startHub(t *testing.T, logDir, data, brokerURL, passFile string, extra ...string) *hub {
	t.Helper()
	h := &hub{data: data, logDir: logDir}
	h.args = append([]string{"serve", "--data", data, "--http", "127.0.0.1:0", "--mqtt", brokerURL,
		"--mqtt-user", "rat-hub", "--mqtt-password-file", passFile, "--addr-file", filepath.Join(data, "addrs.json")}, extra...)
	h.start(t)
	return h
}

// start (re)starts the hub with the same data directory.
func (h *hub) start(t *testing.T) {
	t.Helper()
	addrFile := filepath.Join(h.data, "addrs.json")
	_ = os.Remove(addrFile)
	h.proc = startBin(t, h.logDir, "rat-hub", nil, bin.hub, h.args...)
	h.Hub = harness.WaitHub(t, h.proc, addrFile, h.data)
}

type recordView struct {
	Seq        uint64 `json:"seq"`
	Quoted     bool   `json:"quoted"`
	IMAStart   uint64 `json:"ima_start"`
	IMAEntries int    `json:"ima_entries"`
	Thinned    uint64 `json:"thinned"`
}

func (h *hub) mustDevice(t *testing.T, id string) harness.DeviceView {
	t.Helper()
	d, err := h.Device(id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (h *hub) evidence(t *testing.T, id string) []recordView {
	t.Helper()
	var rs []recordView
	if err := h.Get("/v1/devices/"+id+"/evidence", &rs); err != nil {
		t.Fatal(err)
	}
	return rs
}

// metric reads one counter from /metrics.
func (h *hub) metric(t *testing.T, name string) uint64 {
	t.Helper()
	var text string
	if err := h.Get("/metrics", &text); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", name, err)
			}
			return n
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// waitState waits until the hub says device id is in state.
func (h *hub) waitState(t *testing.T, id, state string, timeout time.Duration) harness.DeviceView {
	t.Helper()
	var d harness.DeviceView
	harness.Eventually(t, timeout, id+" "+state, func() (bool, string) {
		var err error
		d, err = h.Device(id)
		if err != nil {
			return false, err.Error()
		}
		return d.State == state, fmt.Sprintf("state %s %s", d.State, d.Reason)
	})
	return d
}

// waitIMA waits until the hub has verified at least n IMA entries of id.
func (h *hub) waitIMA(t *testing.T, id string, n uint64, timeout time.Duration) harness.DeviceView {
	t.Helper()
	var d harness.DeviceView
	harness.Eventually(t, timeout, fmt.Sprintf("%s: hub verifies %d IMA entries", id, n), func() (bool, string) {
		var err error
		d, err = h.Device(id)
		if err != nil {
			return false, err.Error()
		}
		return d.IMAEntries >= n, fmt.Sprintf("hub has %d (state %s)", d.IMAEntries, d.State)
	})
	return d
}

// checkEvidenceChain asserts the hub's stored records are seqs 1..n with no
// gap or repeat, and their IMA ranges cover entries 0..want-1 exactly once,
// in order: every record and every entry arrived exactly once.
func checkEvidenceChain(t *testing.T, rs []recordView, want uint64) {
	t.Helper()
	if len(rs) == 0 {
		t.Fatal("the hub stored no evidence")
	}
	var next uint64
	for i, r := range rs {
		if r.Seq != uint64(i+1) {
			t.Fatalf("stored record %d has seq %d: the chain is not contiguous from 1 (%+v)", i, r.Seq, rs)
		}
		if r.Thinned != 0 {
			t.Errorf("record %d stands for %d thinned heartbeats; the outbox was not full", r.Seq, r.Thinned)
		}
		if r.IMAEntries == 0 {
			continue
		}
		if r.IMAStart != next {
			t.Fatalf("record %d carries IMA entries from %d, want %d (entries missing or repeated)", r.Seq, r.IMAStart, next)
		}
		next += uint64(r.IMAEntries)
	}
	if last := rs[len(rs)-1]; !last.Quoted {
		t.Errorf("the newest record %d is not quoted", last.Seq)
	}
	if next != want {
		t.Fatalf("stored records carry %d IMA entries, the device's log has %d", next, want)
	}
}

func failuresNaming(fs []harness.FailureEvent, id, path string) bool {
	for _, f := range fs {
		if f.ID == id && (strings.Contains(f.Context, path) || f.Fields["path"] == path) {
			return true
		}
	}
	return false
}
