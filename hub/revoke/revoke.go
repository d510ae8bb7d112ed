package revoke

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"time"
)

// Event is what an action is told about.
type Event struct {
	Device string    `json:"device"`
	Fleet  string    `json:"fleet"`
	Group  string    `json:"group"`
	State  string    `json:"state"`
	Reason string    `json:"reason"`
	Time   time.Time `json:"time"`
}

// Action is one revocation action.
type Action interface {
	Name() string
	Do(ctx context.Context, e Event) error
}

// Audit receives one report per attempt.
type Audit func(e Event, action string, attempt int, err error)

// Runner runs actions with retries.
type Runner struct {
	Actions  []Action
	Audit    Audit
	Attempts int           // default 3
	Backoff  time.Duration // first retry delay, doubled each time (default 200 ms)
	wg       sync.WaitGroup
}

// Fire runs every action for e in the background.
func (r *Runner) Fire(ctx context.Context, e Event) {
	for _, a := range r.Actions {
		r.wg.Add(1)
		go func(a Action) {
			defer r.wg.Done()
			r.run(ctx, a, e)
		}(a)
	}
}

// Wait waits for running actions (for shutdown and tests).
func (r *Runner) Wait() { r.wg.Wait() }

func (r *Runner) run(ctx context.Context, a Action, e Event) {
	attempts, backoff := r.Attempts, r.Backoff
	if attempts <= 0 {
		attempts = 3
	}
	if backoff <= 0 {
		backoff = 200 * time.Millisecond
	}
	for i := 1; i <= attempts; i++ {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := a.Do(actx, e)
		cancel()
		if r.Audit != nil {
			r.Audit(e, a.Name(), i, err)
		}
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff *= 2
	}
}

// SignatureHeader carries the webhook's HMAC: "sha256=<hex>" over the body.
const SignatureHeader = "X-Rat-Signature-256"

// Webhook POSTs the event as JSON, signed with Secret.
type Webhook struct {
	URL    string
	Secret []byte
	Client *http.Client
}

// Name implements Action.
func (w *Webhook) Name() string { return "webhook " + w.URL }

// Sign is the header value for body under secret.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// VerifySignature checks a webhook signature in constant time (for
// receivers written in Go).
func VerifySignature(secret, body []byte, header string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(header))
}

// Do implements Action.
func (w *Webhook) Do(ctx context.Context, e Event) error {
	body, err := json.Marshal(e)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(SignatureHeader, Sign(w.Secret, body))
	c := w.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("revoke: webhook %s: %w", w.URL, err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("revoke: webhook %s: status %s", w.URL, resp.Status)
	}
	return nil
}

// Exec runs a command with the event in its environment (RAT_DEVICE,
// RAT_FLEET, RAT_GROUP, RAT_STATE, RAT_REASON) and as JSON on stdin. The
// command is run directly, never through a shell.
type Exec struct {
	Path string
	Args []string
}

// Name implements Action.
func (x *Exec) Name() string { return "exec " + x.Path }

// Do implements Action.
func (x *Exec) Do(ctx context.Context, e Event) error {
	body, _ := json.Marshal(e)
	cmd := exec.CommandContext(ctx, x.Path, x.Args...)
	cmd.Env = append(os.Environ(), "RAT_DEVICE="+e.Device, "RAT_FLEET="+e.Fleet, "RAT_GROUP="+e.Group, "RAT_STATE="+e.State, "RAT_REASON="+e.Reason)
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if len(out) > 200 {
			out = out[:200]
		}
		return fmt.Errorf("revoke: exec %s: %w: %s", x.Path, err, bytes.TrimSpace(out))
	}
	return nil
}

// Func adapts a function (the MQTT command, the token revocation).
type Func struct {
	N string
	F func(ctx context.Context, e Event) error
}

// Name implements Action.
func (f *Func) Name() string { return f.N }

// Do implements Action.
func (f *Func) Do(ctx context.Context, e Event) error {
	if f.F == nil {
		return errors.New("revoke: no function")
	}
	return f.F(ctx, e)
}
