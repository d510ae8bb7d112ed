package harness

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Hub is a running rat-hub's HTTP API as its operator reaches it: the
// address it wrote to its --addr-file and the operator token in its data
// directory.
type Hub struct {
	URL   string
	Token string
}

// WaitHub waits until the hub process p has written addrFile (rat-hub serve
// --addr-file) and returns its API, with the operator token from
// data/operator.token. The test fails if p exits first.
func WaitHub(t testing.TB, p *Proc, addrFile, data string) Hub {
	t.Helper()
	var h Hub
	Eventually(t, 30*time.Second, p.Name+" addr file", func() (bool, string) {
		if p.Exited() {
			t.Fatalf("%s exited:\n%s", p.Name, Tail(p.Log, 20))
		}
		b, err := os.ReadFile(addrFile)
		if err != nil {
			return false, ""
		}
		var a struct{ HTTP string }
		if err := json.Unmarshal(b, &a); err != nil {
			return false, err.Error()
		}
		h.URL = a.HTTP
		return true, ""
	})
	tok, err := os.ReadFile(filepath.Join(data, "operator.token"))
	if err != nil {
		t.Fatal(err)
	}
	h.Token = strings.TrimSpace(string(tok))
	return h
}

// Call sends an API request with the operator token and decodes a 200
// reply's JSON into v (a *string takes the body as it is, e.g. /metrics).
// Any other status is an error naming the path and the hub's answer.
func (h Hub) Call(method, path string, v any) error {
	req, err := http.NewRequest(method, h.URL+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+h.Token)
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, b)
	}
	if s, ok := v.(*string); ok {
		*s = string(b)
		return nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	return nil
}

// Get is Call with GET.
func (h Hub) Get(path string, v any) error { return h.Call(http.MethodGet, path, v) }

// Device is the hub's view of one device.
func (h Hub) Device(id string) (DeviceView, error) {
	var d DeviceView
	err := h.Get("/v1/devices/"+id, &d)
	return d, err
}

// Events is the device's event history; the test fails if it cannot be read.
func (h Hub) Events(t testing.TB, id string) []HubEvent {
	t.Helper()
	var ev []HubEvent
	if err := h.Get("/v1/devices/"+id+"/events", &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

// FailureEvent is failure.Event as the API shows it.
type FailureEvent struct {
	ID      string            `json:"id"`
	Context string            `json:"context"`
	Fields  map[string]string `json:"fields"`
}

// HubEvent is one entry of a device's event history.
type HubEvent struct {
	Kind   string        `json:"kind"`
	Seq    uint64        `json:"seq"`
	State  string        `json:"state"`
	Detail string        `json:"detail"`
	Event  *FailureEvent `json:"event"`
}

// DeviceView is GET /v1/devices/{id}: the fields the tests read.
type DeviceView struct {
	ID         string         `json:"id"`
	State      string         `json:"state"`
	Reason     string         `json:"reason"`
	EKVerified bool           `json:"ek_verified"`
	EKIssuer   string         `json:"ek_issuer"`
	TOFU       bool           `json:"tofu"`
	BootID     string         `json:"boot_id"`
	IMAEntries uint64         `json:"ima_entries"`
	Quotes     uint64         `json:"quotes"`
	NextSeq    uint64         `json:"next_seq"`
	Thinned    uint64         `json:"thinned"`
	Failures   []FailureEvent `json:"failures"`
	Events     []HubEvent     `json:"events"`
}
