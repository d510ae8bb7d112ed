package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"

	"github.com/ratatouille/rat/audit/policysig"
	"github.com/ratatouille/rat/hub/gitops"
	"github.com/ratatouille/rat/hub/server"
	"github.com/ratatouille/rat/hub/store"
)

// Signed policies: --signers names, per group, who may sign its runtime
// policies (audit/policysig.SignerPolicy; group "*" applies to groups not
// listed); --trusted-root is the Sigstore trusted root they are checked
// against, offline. With --git-repo, policies come from a Git repository
// by webhook (POST /v1/webhooks/git) and/or polling.
var (
	signersFile, trustedRootFile          *string
	gitRepo, gitBranch, gitSecret, gitOne *string
	gitPoll                               *time.Duration
	policyVerifiers                       map[string]*policysig.Verifier
	trustedRootJSON                       []byte
)

// SignersConfig is the --signers file.
type SignersConfig struct {
	Groups map[string]json.RawMessage `json:"groups"`
}

func init() {
	serveFlags = append(serveFlags, func(fs *flag.FlagSet) {
		signersFile = fs.String("signers", "", "JSON file: {\"groups\": {\"<group>|*\": <signer policy>}} naming who may sign each group's policies")
		trustedRootFile = fs.String("trusted-root", "", "Sigstore trusted_root.json policies are verified against (offline)")
		gitRepo = fs.String("git-repo", "", "policy repository (https URL or local path)")
		gitBranch = fs.String("git-branch", "main", "policy repository branch")
		gitSecret = fs.String("git-webhook-secret-file", "", "file holding the webhook HMAC secret (enables POST /v1/webhooks/git)")
		gitPoll = fs.Duration("git-poll", 0, "poll the policy repository at this interval (0: webhook only)")
		gitOne = fs.String("git-single-group", "", "the repository uses the single-group runtime/ layout for this group")
	})
	configHooks = append(configHooks, configurePolicyCheck)
	serveHooks = append(serveHooks, startGitOps)
}

func configurePolicyCheck(cfg *server.Config) error {
	if *signersFile == "" {
		if *gitRepo != "" {
			return errors.New("--git-repo needs --signers: policies from Git must be signed")
		}
		return nil
	}
	var root []byte
	if *trustedRootFile != "" {
		b, err := os.ReadFile(*trustedRootFile)
		if err != nil {
			return fmt.Errorf("--trusted-root: %w", err)
		}
		root = b
		trustedRootJSON = b
	}
	vs, err := loadVerifiers(*signersFile, root)
	if err != nil {
		return err
	}
	policyVerifiers = vs
	cfg.PolicyCheck = func(group string, doc, bundle []byte) (*server.PolicyMeta, error) {
		v := vs[group]
		if v == nil {
			v = vs["*"]
		}
		if v == nil {
			return nil, fmt.Errorf("no signer is configured for group %s", group)
		}
		if len(bundle) == 0 {
			return nil, errors.New("the policy has no Sigstore bundle")
		}
		res, err := v.Verify(doc, bundle)
		if err != nil {
			return nil, err
		}
		m := &server.PolicyMeta{Signer: res.Signer(), Issuer: res.Issuer, Signed: res.IntegratedTime}
		if i, ok := res.LogIndex(); ok {
			m.LogIndex = i
		}
		if len(res.Tlog) > 0 {
			m.LogID = res.Tlog[0].LogID
		}
		return m, nil
	}
	return nil
}

func loadVerifiers(path string, rootJSON []byte) (map[string]*policysig.Verifier, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--signers: %w", err)
	}
	var sc SignersConfig
	if err := json.Unmarshal(b, &sc); err != nil {
		return nil, fmt.Errorf("--signers %s: %w", path, err)
	}
	if len(sc.Groups) == 0 {
		return nil, fmt.Errorf("--signers %s: no groups", path)
	}
	var trusted *root.TrustedRoot
	if rootJSON != nil {
		tr, err := policysig.ParseTrustedRoot(rootJSON)
		if err != nil {
			return nil, fmt.Errorf("--trusted-root: %w", err)
		}
		trusted = tr
	}
	out := map[string]*policysig.Verifier{}
	for g, raw := range sc.Groups {
		p, err := policysig.ParseSignerPolicy(raw)
		if err != nil {
			return nil, fmt.Errorf("--signers group %s: %w", g, err)
		}
		v, err := policysig.NewFromPolicy(trusted, p)
		if err != nil {
			return nil, fmt.Errorf("--signers group %s: %w", g, err)
		}
		out[g] = v
	}
	return out, nil
}

func startGitOps(ctx context.Context, h *hubRuntime) error {
	h.API.TrustedRoot = trustedRootJSON // exported bundles carry it
	if *gitRepo == "" {
		return nil
	}
	apply := func(_ context.Context, u gitops.Update) error {
		_, err := h.Server.SetPolicy(u.Group, u.Policy, u.Bundle, "git:"+u.PolicyPath, u.Commit)
		return err
	}
	reject := func(_ context.Context, r gitops.Rejection) {
		h.Log.Warn("policy from git rejected", "group", r.Group, "commit", r.Commit, "path", r.PolicyPath, "reason", r.Reason)
		if r.Group != "" {
			_ = h.Store.PutPolicy(&store.Policy{Group: r.Group, Name: r.Group, Digest: strings.TrimPrefix(r.Digest, "sha256:"), JSON: r.Policy, Bundle: r.Bundle,
				Source: "git:" + r.PolicyPath, Commit: r.Commit, Status: "rejected", Why: r.Reason, Activated: time.Now().UTC()})
		}
	}
	opts := []gitops.Option{gitops.WithBranch(*gitBranch), gitops.WithReject(reject)}
	if *gitOne != "" {
		opts = append(opts, gitops.WithSingleGroup(*gitOne))
	}
	s, err := gitops.New(*gitRepo, policyVerifiers, apply, opts...)
	if err != nil {
		return err
	}
	if *gitSecret != "" {
		b, err := os.ReadFile(*gitSecret)
		if err != nil {
			return fmt.Errorf("--git-webhook-secret-file: %w", err)
		}
		wh, err := gitops.NewWebhook(s, []byte(strings.TrimSpace(string(b))))
		if err != nil {
			return err
		}
		h.API.Mount("POST "+gitops.WebhookPath, wh)
	}
	if *gitPoll > 0 {
		go func() {
			_ = s.Poll(ctx, *gitPoll, func(err error) { h.Log.Warn("policy repository poll", "err", err) })
		}()
	}
	h.Log.Info("policies from git", "repo", *gitRepo, "branch", *gitBranch, "webhook", *gitSecret != "", "poll", gitPoll.String())
	return nil
}
