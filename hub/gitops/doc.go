// Package gitops brings signed runtime policies from a Git repository to
// the hub: a GitHub/Gitea/GitLab push webhook (POST /v1/webhooks/git) and
// a polling loop, both of which read the policy files at one exact commit,
// verify each with audit/policysig against its group's signer policy, and
// hand verified policies to a callback the hub supplies.
//
// It owns the repository layout, the webhook authentication and the
// commit-to-policies step. It does not store policies or talk to devices
// (the hub's Apply callback does), and it must not import hub/server,
// hub/store or any HTTP framework: the hub mounts the handler.
//
// # Repository layout
//
//	groups/<group>/runtime_policy.json               the Keylime runtime policy
//	groups/<group>/runtime_policy.json.sigstore.json its Sigstore bundle (cosign sign-blob --bundle)
//	runtime/runtime_policy.json                      single-group repository (the seed's layout),
//	runtime/artifact.sigstore.json                   applied to the group named by WithSingleGroup
//
// Group names are [A-Za-z0-9._-]{1,64}, not starting with '.'. Only
// regular files count (a symlink is rejected, its target is not read).
//
// # Trust decisions
//
//   - The webhook checks the HMAC (GitHub X-Hub-Signature-256, Gitea
//     X-Gitea-Signature; GitLab's X-Gitlab-Token shared secret) with a
//     constant-time compare before it parses the payload; a wrong or
//     missing signature is 401 and nothing is fetched.
//   - The repository URL comes from the hub's configuration, never from
//     the payload; the payload only names a branch and a commit SHA.
//   - Files are read at the pushed commit SHA, never at HEAD or a branch
//     name. The commit must be the configured branch's current tip after
//     the fetch: a replayed or late webhook for an older commit is
//     reported as stale and applies nothing (a rollback is a new commit,
//     git revert, so it is the tip when its push arrives).
//   - Each policy is verified (signature, signer, transparency log per the
//     group's policysig.Verifier) before it is parsed; a verified policy
//     that is not a valid Keylime runtime policy is rejected too.
//   - A group without a verifier is rejected (never applied unsigned).
//   - Idempotent: the last applied digest per group is remembered; the
//     same policy again is "unchanged" and the callback is not called.
//
// # Why go-git
//
// Fetching uses go-git v5 (pure Go; it resolves through the module proxy
// and builds), so the hub needs no git binary and runs no subprocess with
// repository-controlled input. Remote repositories (https://) are fetched
// into an in-memory object store kept between syncs (incremental
// fetches); local paths are opened directly with go-git (go-git's file://
// transport would exec git-upload-pack, which we avoid).
package gitops
