package gitops

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// WebhookPath is where the hub mounts the handler.
const WebhookPath = "/v1/webhooks/git"

// MaxWebhookBody bounds a push payload. GitHub caps payloads at 25 MB,
// but a push that matters to us names one commit; big bodies are refused
// before the MAC is computed over them.
const MaxWebhookBody = 5 << 20

// PushEvent is the part of a push payload we use (same field names in
// GitHub, Gitea and GitLab).
type PushEvent struct {
	Ref     string `json:"ref"`
	After   string `json:"after"`
	Deleted bool   `json:"deleted"`
}

// ParsePushEvent reads a push payload. It is called only after the MAC
// has been checked.
func ParsePushEvent(b []byte) (*PushEvent, error) {
	var ev PushEvent
	if err := json.Unmarshal(b, &ev); err != nil {
		return nil, fmt.Errorf("gitops: push payload: %w", err)
	}
	if !strings.HasPrefix(ev.Ref, "refs/") {
		return nil, fmt.Errorf("gitops: push payload: ref %q", ev.Ref)
	}
	if !commitRE.MatchString(ev.After) {
		return nil, fmt.Errorf("gitops: push payload: after %q is not a commit id", ev.After)
	}
	return &ev, nil
}

// CheckSignature authenticates a webhook request body with secret:
// GitHub's X-Hub-Signature-256 ("sha256=" + hex HMAC-SHA256), Gitea's
// X-Gitea-Signature (hex HMAC-SHA256) or GitLab's X-Gitlab-Token (the
// secret itself). All compares are constant-time.
func CheckSignature(h http.Header, body, secret []byte) error {
	if len(secret) == 0 {
		return errors.New("gitops: no webhook secret configured")
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	want := mac.Sum(nil)
	if sig := h.Get("X-Hub-Signature-256"); sig != "" {
		got, err := hex.DecodeString(strings.TrimPrefix(sig, "sha256="))
		if err != nil || !strings.HasPrefix(sig, "sha256=") || !hmac.Equal(got, want) {
			return errors.New("gitops: X-Hub-Signature-256 does not match")
		}
		return nil
	}
	if sig := h.Get("X-Gitea-Signature"); sig != "" {
		got, err := hex.DecodeString(sig)
		if err != nil || !hmac.Equal(got, want) {
			return errors.New("gitops: X-Gitea-Signature does not match")
		}
		return nil
	}
	if tok := h.Get("X-Gitlab-Token"); tok != "" {
		// Compare MACs of both so the compare is constant-time even for
		// different lengths.
		a, b := hmac.New(sha256.New, secret), hmac.New(sha256.New, secret)
		a.Write([]byte(tok))
		b.Write(secret)
		if subtle.ConstantTimeCompare(a.Sum(nil), b.Sum(nil)) != 1 {
			return errors.New("gitops: X-Gitlab-Token does not match")
		}
		return nil
	}
	return errors.New("gitops: no webhook signature header")
}

// eventType is the push/ping kind from whichever forge sent it.
func eventType(h http.Header) string {
	for _, k := range []string{"X-GitHub-Event", "X-Gitea-Event", "X-Gogs-Event"} {
		if v := h.Get(k); v != "" {
			return strings.ToLower(v)
		}
	}
	if v := h.Get("X-Gitlab-Event"); v != "" {
		if v == "Push Hook" {
			return "push"
		}
		return strings.ToLower(v)
	}
	return ""
}

type webhook struct {
	s       *Syncer
	secret  []byte
	timeout time.Duration
}

// NewWebhook returns the POST /v1/webhooks/git handler for s. The secret
// is required: there is no unauthenticated mode.
//
// Replies: 200 with the sync Status as JSON (also when some groups were
// rejected: the push was handled); 202 for events that are not pushes to
// the configured branch (ping, tags, other branches, deletions); 401 for
// a missing or wrong signature (nothing parsed, nothing fetched); 400 for
// a payload that is not a push; 405, 413; 502 when the repository could
// not be fetched or does not have the commit.
func NewWebhook(s *Syncer, secret []byte) (http.Handler, error) {
	if s == nil {
		return nil, errors.New("gitops: nil Syncer")
	}
	if len(secret) < 16 {
		return nil, errors.New("gitops: webhook secret must be at least 16 bytes")
	}
	return &webhook{s: s, secret: append([]byte(nil), secret...), timeout: 2 * time.Minute}, nil
}

func (w *webhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		rw.Header().Set("Allow", http.MethodPost)
		http.Error(rw, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxWebhookBody+1))
	if err != nil {
		http.Error(rw, "reading body", http.StatusBadRequest)
		return
	}
	if len(body) > MaxWebhookBody {
		http.Error(rw, "payload too large", http.StatusRequestEntityTooLarge)
		return
	}
	if err := CheckSignature(r.Header, body, w.secret); err != nil {
		http.Error(rw, "bad signature", http.StatusUnauthorized)
		return
	}
	switch eventType(r.Header) {
	case "push":
	case "ping":
		writeJSON(rw, http.StatusOK, map[string]string{"status": "pong"})
		return
	default:
		writeJSON(rw, http.StatusAccepted, map[string]string{"status": "ignored: not a push event"})
		return
	}
	ev, err := ParsePushEvent(body)
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	if ev.Ref != "refs/heads/"+w.s.Branch() {
		writeJSON(rw, http.StatusAccepted, map[string]string{"status": "ignored: push to " + ev.Ref})
		return
	}
	if ev.Deleted || strings.Trim(ev.After, "0") == "" {
		writeJSON(rw, http.StatusAccepted, map[string]string{"status": "ignored: branch deleted"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), w.timeout)
	defer cancel()
	st, err := w.s.Sync(ctx, ev.After)
	if err != nil {
		code := http.StatusBadGateway
		if errors.Is(err, ErrBadCommit) {
			code = http.StatusBadRequest
		}
		http.Error(rw, err.Error(), code)
		return
	}
	writeJSON(rw, http.StatusOK, st)
}

func writeJSON(rw http.ResponseWriter, code int, v any) {
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(code)
	_ = json.NewEncoder(rw).Encode(v)
}
