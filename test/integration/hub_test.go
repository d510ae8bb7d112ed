package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// hub is a running rat-hub process on an external broker.
type hub struct {
	data, logDir string
	args         []string
	proc         *proc
	api          string
	token        string
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
	h.proc = startProc(t, h.logDir, "rat-hub", nil, bin.hub, h.args...)
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(addrFile)
		if err == nil {
			var a struct{ HTTP string }
			if err := json.Unmarshal(b, &a); err != nil {
				t.Fatalf("hub addr file: %v", err)
			}
			h.api = a.HTTP
			break
		}
		if h.proc.exited() || time.Now().After(deadline) {
			t.Fatalf("rat-hub did not start:\n%s", tail(h.proc.log, 20))
		}
		time.Sleep(20 * time.Millisecond)
	}
	tok, err := os.ReadFile(filepath.Join(h.data, "operator.token"))
	if err != nil {
		t.Fatal(err)
	}
	h.token = strings.TrimSpace(string(tok))
}

// get GETs an API path into v.
func (h *hub) get(path string, v any) error {
	req, err := http.NewRequest(http.MethodGet, h.api+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+h.token)
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, b)
	}
	if s, ok := v.(*string); ok {
		*s = string(b)
		return nil
	}
	return json.Unmarshal(b, v)
}

// failureEvent is failure.Event as the API shows it.
type failureEvent struct {
	ID      string            `json:"id"`
	Context string            `json:"context"`
	Fields  map[string]string `json:"fields"`
}

type hubEvent struct {
	Kind   string        `json:"kind"`
	Seq    uint64        `json:"seq"`
	State  string        `json:"state"`
	Detail string        `json:"detail"`
	Event  *failureEvent `json:"event"`
}

type deviceView struct {
	ID         string         `json:"id"`
	State      string         `json:"state"`
	Reason     string         `json:"reason"`
	IMAEntries uint64         `json:"ima_entries"`
	Quotes     uint64         `json:"quotes"`
	NextSeq    uint64         `json:"next_seq"`
	Thinned    uint64         `json:"thinned"`
	Failures   []failureEvent `json:"failures"`
	Events     []hubEvent     `json:"events"`
}

type recordView struct {
	Seq        uint64 `json:"seq"`
	Quoted     bool   `json:"quoted"`
	IMAStart   uint64 `json:"ima_start"`
	IMAEntries int    `json:"ima_entries"`
	Thinned    uint64 `json:"thinned"`
}

func (h *hub) device(id string) (deviceView, error) {
	var d deviceView
	err := h.get("/v1/devices/"+id, &d)
	return d, err
}

func (h *hub) mustDevice(t *testing.T, id string) deviceView {
	t.Helper()
	d, err := h.device(id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (h *hub) events(t *testing.T, id string) []hubEvent {
	t.Helper()
	var ev []hubEvent
	if err := h.get("/v1/devices/"+id+"/events", &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

func (h *hub) evidence(t *testing.T, id string) []recordView {
	t.Helper()
	var rs []recordView
	if err := h.get("/v1/devices/"+id+"/evidence", &rs); err != nil {
		t.Fatal(err)
	}
	return rs
}

// metric reads one counter from /metrics.
func (h *hub) metric(t *testing.T, name string) uint64 {
	t.Helper()
	var text string
	if err := h.get("/metrics", &text); err != nil {
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
func (h *hub) waitState(t *testing.T, id, state string, timeout time.Duration) deviceView {
	t.Helper()
	var d deviceView
	eventually(t, timeout, id+" "+state, func() (bool, string) {
		var err error
		d, err = h.device(id)
		if err != nil {
			return false, err.Error()
		}
		return d.State == state, fmt.Sprintf("state %s %s", d.State, d.Reason)
	})
	return d
}

// waitIMA waits until the hub has verified at least n IMA entries of id.
func (h *hub) waitIMA(t *testing.T, id string, n uint64, timeout time.Duration) deviceView {
	t.Helper()
	var d deviceView
	eventually(t, timeout, fmt.Sprintf("%s: hub verifies %d IMA entries", id, n), func() (bool, string) {
		var err error
		d, err = h.device(id)
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

func failuresNaming(fs []failureEvent, id, path string) bool {
	for _, f := range fs {
		if f.ID == id && (strings.Contains(f.Context, path) || f.Fields["path"] == path) {
			return true
		}
	}
	return false
}
