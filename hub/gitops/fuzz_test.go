package gitops_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/ratatouille/rat/hub/gitops"
)

// FuzzParsePushEvent: whatever it accepts names a ref and a well-formed
// commit id; it never panics.
func FuzzParsePushEvent(f *testing.F) {
	f.Add(githubPush("refs/heads/main", strings.Repeat("0", 40), strings.Repeat("a", 40)))
	f.Add([]byte(`{"ref":"refs/heads/main","after":"` + strings.Repeat("b", 64) + `"}`))
	f.Add([]byte(`{"ref":"main","after":"HEAD"}`))
	f.Add([]byte(`{"zen":"ping"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := gitops.ParsePushEvent(b)
		if err != nil {
			return
		}
		if !strings.HasPrefix(ev.Ref, "refs/") || (len(ev.After) != 40 && len(ev.After) != 64) || strings.Trim(ev.After, "0123456789abcdef") != "" {
			t.Fatalf("accepted %+v", ev)
		}
	})
}

// FuzzCheckSignature: a header set accepts a body only if it carries the
// real HMAC (or the GitLab token) for it.
func FuzzCheckSignature(f *testing.F) {
	body := []byte(`{"ref":"refs/heads/main"}`)
	f.Add(body, githubSig(body, secret), "", "")
	f.Add(body, "sha256=00", "00", string(secret))
	f.Add(body, "", strings.TrimPrefix(githubSig(body, secret), "sha256="), "")
	f.Fuzz(func(t *testing.T, b []byte, hub, gitea, gitlab string) {
		h := http.Header{}
		if hub != "" {
			h.Set("X-Hub-Signature-256", hub)
		}
		if gitea != "" {
			h.Set("X-Gitea-Signature", gitea)
		}
		if gitlab != "" {
			h.Set("X-Gitlab-Token", gitlab)
		}
		if gitops.CheckSignature(h, b, secret) != nil {
			return
		}
		want := githubSig(b, secret)
		switch {
		case h.Get("X-Hub-Signature-256") != "":
			if !strings.EqualFold(h.Get("X-Hub-Signature-256"), want) {
				t.Fatalf("accepted GitHub signature %q", hub)
			}
		case h.Get("X-Gitea-Signature") != "":
			if !strings.EqualFold(h.Get("X-Gitea-Signature"), strings.TrimPrefix(want, "sha256=")) {
				t.Fatalf("accepted Gitea signature %q", gitea)
			}
		default:
			if h.Get("X-Gitlab-Token") != string(secret) {
				t.Fatalf("accepted GitLab token %q", gitlab)
			}
		}
	})
}
