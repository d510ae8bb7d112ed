package gitops

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/ratatouille/rat/audit/policysig"
	"github.com/ratatouille/rat/evidence/protocol"
	"github.com/ratatouille/rat/evidence/runtimepolicy"
)

// Layout file names (see the package doc).
const (
	GroupsDir        = "groups"
	PolicyFile       = "runtime_policy.json"
	BundleSuffix     = ".sigstore.json"
	SingleGroupDir   = "runtime"
	SingleBundleFile = "artifact.sigstore.json"
)

// DefaultMaxPolicySize bounds one policy file. Keylime policies of a full
// distribution are tens of MiB; larger blobs are refused unread.
const DefaultMaxPolicySize = 64 << 20

// Update is one verified policy for the hub to store and fan out.
type Update struct {
	Group      string
	Policy     []byte // exact bytes that were verified
	Bundle     []byte
	Commit     string // the commit the files were read at
	PolicyPath string // path in the repository
	Result     *policysig.Result
}

// Apply stores and activates a verified policy. An error leaves the
// group's policy unchanged (it is retried on the next push or poll).
type Apply func(ctx context.Context, u Update) error

// Rejection is a policy that was not applied, and why.
type Rejection struct {
	Group      string `json:"group"`
	Commit     string `json:"commit"`
	PolicyPath string `json:"policy_path"`
	// Digest is sha256:<hex> of the policy bytes (not verified: it names
	// what was refused).
	Digest string `json:"digest,omitempty"`
	Reason string `json:"reason"`
	Err    error  `json:"-"`
	// Policy and Bundle are the refused bytes when they could be read
	// (nil otherwise), so the hub can keep them with the record.
	Policy []byte `json:"-"`
	Bundle []byte `json:"-"`
}

// Reject records a rejected policy (the hub stores it as "rejected").
type Reject func(ctx context.Context, r Rejection)

// Outcome of one group at one commit.
type Outcome string

const (
	Applied   Outcome = "applied"
	Unchanged Outcome = "unchanged" // same digest as the last applied
	Rejected  Outcome = "rejected"
	Failed    Outcome = "failed" // verified, but Apply returned an error
)

// GroupStatus is what happened to one group's policy.
type GroupStatus struct {
	Group      string  `json:"group"`
	PolicyPath string  `json:"policy_path"`
	Digest     string  `json:"digest,omitempty"`
	Outcome    Outcome `json:"outcome"`
	Reason     string  `json:"reason,omitempty"`
	Signer     string  `json:"signer,omitempty"`
}

// Status is the result of one sync.
type Status struct {
	Commit string `json:"commit"`
	Branch string `json:"branch"`
	// Stale is set when the commit is not the branch tip: nothing was
	// read or applied. Tip names the current tip.
	Stale  bool          `json:"stale,omitempty"`
	Tip    string        `json:"tip,omitempty"`
	Groups []GroupStatus `json:"groups"`
}

// Errors of Sync.
var (
	ErrBadCommit      = errors.New("gitops: not a commit id")
	ErrCommitNotFound = errors.New("gitops: commit not found on the configured branch")
	ErrFetch          = errors.New("gitops: fetch")
)

// Option configures a Syncer.
type Option func(*Syncer) error

// WithBranch sets the branch whose pushes are applied (default "main").
func WithBranch(b string) Option {
	return func(s *Syncer) error {
		if b == "" || strings.ContainsAny(b, " ~^:?*[\\") || strings.Contains(b, "..") || strings.HasPrefix(b, "-") {
			return fmt.Errorf("gitops: bad branch name %q", b)
		}
		s.branch = b
		return nil
	}
}

// WithSingleGroup applies runtime/runtime_policy.json (signed by
// runtime/artifact.sigstore.json) to group g.
func WithSingleGroup(g string) Option {
	return func(s *Syncer) error {
		if err := protocol.ValidID(g); err != nil {
			return fmt.Errorf("gitops: single group: %w", err)
		}
		s.single = g
		return nil
	}
}

// WithReject sets the callback for rejected policies.
func WithReject(r Reject) Option {
	return func(s *Syncer) error { s.reject = r; return nil }
}

// WithBasicAuth sets HTTP basic credentials for an https repository (for
// GitHub: any user name and a token). They are never logged.
func WithBasicAuth(user, password string) Option {
	return func(s *Syncer) error { s.auth = &githttp.BasicAuth{Username: user, Password: password}; return nil }
}

// WithCABundle adds PEM CA certificates to trust for an https
// repository on a private Git server (in addition to the system roots).
func WithCABundle(pemCerts []byte) Option {
	return func(s *Syncer) error { s.caBundle = append([]byte(nil), pemCerts...); return nil }
}

// WithMaxPolicySize overrides DefaultMaxPolicySize.
func WithMaxPolicySize(n int64) Option {
	return func(s *Syncer) error {
		if n <= 0 {
			return fmt.Errorf("gitops: max policy size %d", n)
		}
		s.maxSize = n
		return nil
	}
}

// WithApplied primes the idempotence memory with the digests the hub
// already has active (group → "sha256:<hex>"), e.g. after a restart.
func WithApplied(m map[string]string) Option {
	return func(s *Syncer) error {
		for g, d := range m {
			s.applied[g] = d
		}
		return nil
	}
}

// WithFetchTimeout bounds one fetch (default 60 s).
func WithFetchTimeout(d time.Duration) Option {
	return func(s *Syncer) error { s.fetchTimeout = d; return nil }
}

// Syncer reads, verifies and applies the policies of one repository.
// It is safe for concurrent use; syncs are serialised.
type Syncer struct {
	repoURL      string
	localPath    string // set for a local repository
	branch       string
	single       string
	verifiers    map[string]*policysig.Verifier
	apply        Apply
	reject       Reject
	auth         *githttp.BasicAuth
	caBundle     []byte
	maxSize      int64
	fetchTimeout time.Duration

	mu       sync.Mutex
	mem      *git.Repository // remote repositories: objects kept between fetches
	applied  map[string]string
	lastSync string
}

var commitRE = regexp.MustCompile(`^(?:[0-9a-f]{40}|[0-9a-f]{64})$`)

// New returns a Syncer for repo (an https:// URL, a file:// URL or an
// absolute local path), with one verifier per group.
func New(repo string, verifiers map[string]*policysig.Verifier, apply Apply, opts ...Option) (*Syncer, error) {
	if apply == nil {
		return nil, errors.New("gitops: nil Apply")
	}
	s := &Syncer{repoURL: repo, branch: "main", verifiers: map[string]*policysig.Verifier{}, apply: apply,
		maxSize: DefaultMaxPolicySize, fetchTimeout: time.Minute, applied: map[string]string{}}
	for g, v := range verifiers {
		if err := protocol.ValidID(g); err != nil {
			return nil, fmt.Errorf("gitops: group %q: %w", g, err)
		}
		if v == nil {
			return nil, fmt.Errorf("gitops: group %q: nil verifier", g)
		}
		s.verifiers[g] = v
	}
	switch {
	case strings.HasPrefix(repo, "https://"):
		if _, err := url.Parse(repo); err != nil {
			return nil, fmt.Errorf("gitops: repository URL: %w", err)
		}
	case strings.HasPrefix(repo, "file://"):
		u, err := url.Parse(repo)
		if err != nil || u.Host != "" || !filepath.IsAbs(u.Path) {
			return nil, fmt.Errorf("gitops: repository URL %q: want file:///absolute/path", repo)
		}
		s.localPath = u.Path
	case filepath.IsAbs(repo):
		s.localPath = filepath.Clean(repo)
	default:
		// No ssh, git://, ext:: or relative paths: the hub fetches over
		// authenticated TLS or from a checkout it controls.
		return nil, fmt.Errorf("gitops: repository %q: want https:// URL or absolute local path", repo)
	}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Branch is the branch whose pushes are applied.
func (s *Syncer) Branch() string { return s.branch }

// open returns a repository holding the branch's current objects and the
// branch tip.
func (s *Syncer) open(ctx context.Context) (*git.Repository, plumbing.Hash, error) {
	if s.localPath != "" {
		r, err := git.PlainOpen(s.localPath)
		if err != nil {
			return nil, plumbing.ZeroHash, fmt.Errorf("%w: open %s: %w", ErrFetch, s.localPath, err)
		}
		ref, err := r.Reference(plumbing.NewBranchReferenceName(s.branch), true)
		if err != nil {
			return nil, plumbing.ZeroHash, fmt.Errorf("%w: branch %s: %w", ErrFetch, s.branch, err)
		}
		return r, ref.Hash(), nil
	}
	if s.mem == nil {
		r, err := git.Init(memory.NewStorage(), nil)
		if err != nil {
			return nil, plumbing.ZeroHash, fmt.Errorf("%w: %w", ErrFetch, err)
		}
		if _, err := r.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{s.repoURL}}); err != nil {
			return nil, plumbing.ZeroHash, fmt.Errorf("%w: %w", ErrFetch, err)
		}
		s.mem = r
	}
	ctx, cancel := context.WithTimeout(ctx, s.fetchTimeout)
	defer cancel()
	remoteRef := plumbing.NewRemoteReferenceName("origin", s.branch)
	fo := &git.FetchOptions{
		RemoteName: "origin",
		RefSpecs:   []config.RefSpec{config.RefSpec("+" + plumbing.NewBranchReferenceName(s.branch).String() + ":" + remoteRef.String())},
		Tags:       git.NoTags,
		Force:      true,
		CABundle:   s.caBundle,
	}
	if s.auth != nil {
		fo.Auth = s.auth
	}
	if err := s.mem.FetchContext(ctx, fo); err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return nil, plumbing.ZeroHash, fmt.Errorf("%w: %s branch %s: %w", ErrFetch, redact(s.repoURL), s.branch, err)
	}
	ref, err := s.mem.Reference(remoteRef, true)
	if err != nil {
		return nil, plumbing.ZeroHash, fmt.Errorf("%w: branch %s: %w", ErrFetch, s.branch, err)
	}
	return s.mem, ref.Hash(), nil
}

// redact drops credentials from a URL before it goes into an error.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "repository"
	}
	p.User = nil
	return p.String()
}

// Sync reads the policies at commit (which must be the configured
// branch's tip), verifies them and applies the verified ones.
func (s *Syncer) Sync(ctx context.Context, commit string) (*Status, error) {
	if !commitRE.MatchString(commit) {
		return nil, fmt.Errorf("%w: %q", ErrBadCommit, commit)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, tip, err := s.open(ctx)
	if err != nil {
		return nil, err
	}
	st := &Status{Commit: commit, Branch: s.branch, Groups: []GroupStatus{}}
	if tip.String() != commit {
		// Only the tip is applied: an old (replayed, late) push must not
		// roll the fleet back. The hash must still exist to say "stale".
		if _, err := r.CommitObject(plumbing.NewHash(commit)); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrCommitNotFound, commit, err)
		}
		st.Stale, st.Tip = true, tip.String()
		return st, nil
	}
	if err := s.syncCommit(ctx, r, commit, st); err != nil {
		return nil, err
	}
	s.markSynced(st)
	return st, nil
}

// PollOnce fetches the branch and syncs its tip if it changed since the
// last sync. It returns nil status when nothing changed.
func (s *Syncer) PollOnce(ctx context.Context) (*Status, error) {
	s.mu.Lock()
	r, tip, err := s.open(ctx)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	if tip.String() == s.lastSync {
		s.mu.Unlock()
		return nil, nil
	}
	st := &Status{Commit: tip.String(), Branch: s.branch, Groups: []GroupStatus{}}
	err = s.syncCommit(ctx, r, tip.String(), st)
	if err == nil {
		s.markSynced(st)
	}
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return st, nil
}

// Poll calls PollOnce every interval until ctx ends, for hubs that cannot
// receive webhooks. Errors go to onErr (may be nil) and polling goes on.
func (s *Syncer) Poll(ctx context.Context, interval time.Duration, onErr func(error)) error {
	if interval <= 0 {
		return fmt.Errorf("gitops: poll interval %v", interval)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := s.PollOnce(ctx); err != nil && onErr != nil {
			onErr(err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// markSynced remembers st's commit as done unless an Apply failed, so
// that polling retries a commit whose policy the hub could not store.
func (s *Syncer) markSynced(st *Status) {
	for _, g := range st.Groups {
		if g.Outcome == Failed {
			return
		}
	}
	s.lastSync = st.Commit
}

// candidate is one policy file pair found in the tree.
type candidate struct {
	group, policyPath, bundlePath string
}

func (s *Syncer) candidates(tree *object.Tree) []candidate {
	var out []candidate
	if gt, err := tree.Tree(GroupsDir); err == nil {
		for _, e := range gt.Entries {
			if e.Mode != filemode.Dir {
				continue
			}
			p := path.Join(GroupsDir, e.Name, PolicyFile)
			out = append(out, candidate{group: e.Name, policyPath: p, bundlePath: p + BundleSuffix})
		}
	}
	if s.single != "" {
		p := path.Join(SingleGroupDir, PolicyFile)
		if _, err := tree.FindEntry(p); err == nil {
			out = append(out, candidate{group: s.single, policyPath: p, bundlePath: path.Join(SingleGroupDir, SingleBundleFile)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].policyPath < out[j].policyPath })
	return out
}

func (s *Syncer) syncCommit(ctx context.Context, r *git.Repository, commit string, st *Status) error {
	c, err := r.CommitObject(plumbing.NewHash(commit))
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrCommitNotFound, commit, err)
	}
	tree, err := c.Tree()
	if err != nil {
		return fmt.Errorf("gitops: tree of %s: %w", commit, err)
	}
	seen := map[string]string{}
	for _, cd := range s.candidates(tree) {
		gs := s.syncOne(ctx, tree, commit, cd, seen)
		st.Groups = append(st.Groups, gs)
	}
	return nil
}

func (s *Syncer) syncOne(ctx context.Context, tree *object.Tree, commit string, cd candidate, seen map[string]string) GroupStatus {
	gs := GroupStatus{Group: cd.group, PolicyPath: cd.policyPath}
	var pol, bundle []byte
	rej := func(digest, reason string, err error) GroupStatus {
		gs.Outcome, gs.Reason, gs.Digest = Rejected, reason, digest
		if s.reject != nil {
			s.reject(ctx, Rejection{Group: cd.group, Commit: commit, PolicyPath: cd.policyPath, Digest: digest, Reason: reason, Err: err, Policy: pol, Bundle: bundle})
		}
		return gs
	}
	if err := protocol.ValidID(cd.group); err != nil {
		return rej("", "bad group name: "+err.Error(), err)
	}
	if prev, dup := seen[cd.group]; dup {
		return rej("", "group "+cd.group+" is also defined by "+prev, nil)
	}
	seen[cd.group] = cd.policyPath
	pol, err := s.readFile(tree, cd.policyPath)
	if err != nil {
		pol = nil
		return rej("", err.Error(), err)
	}
	sum := sha256.Sum256(pol)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	v := s.verifiers[cd.group]
	if v == nil {
		return rej(digest, "no signer policy configured for group "+cd.group, nil)
	}
	bundle, err = s.readFile(tree, cd.bundlePath)
	if err != nil {
		bundle = nil
		return rej(digest, "unsigned: "+err.Error(), err)
	}
	res, err := v.Verify(pol, bundle)
	if err != nil {
		return rej(digest, err.Error(), err)
	}
	gs.Signer = res.Signer()
	// Parsed only now, after the signature: a signed policy must still be
	// a valid Keylime policy before it reaches any device.
	if _, err := runtimepolicy.Parse(pol); err != nil {
		return rej(digest, "signed but invalid runtime policy: "+err.Error(), err)
	}
	gs.Digest = res.Digest
	if s.applied[cd.group] == res.Digest {
		gs.Outcome = Unchanged
		return gs
	}
	if err := s.apply(ctx, Update{Group: cd.group, Policy: pol, Bundle: bundle, Commit: commit, PolicyPath: cd.policyPath, Result: res}); err != nil {
		gs.Outcome, gs.Reason = Failed, err.Error()
		return gs
	}
	s.applied[cd.group] = res.Digest
	gs.Outcome = Applied
	return gs
}

// readFile reads one regular file of the tree, refusing symlinks,
// submodules and files over the size limit before reading them.
func (s *Syncer) readFile(tree *object.Tree, p string) ([]byte, error) {
	e, err := tree.FindEntry(p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if e.Mode != filemode.Regular && e.Mode != filemode.Executable {
		return nil, fmt.Errorf("%s: not a regular file (mode %s)", p, e.Mode)
	}
	f, err := tree.TreeEntryFile(e)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if f.Size > s.maxSize {
		return nil, fmt.Errorf("%s: %d bytes (limit %d)", p, f.Size, s.maxSize)
	}
	rd, err := f.Reader()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	defer rd.Close()
	b, err := io.ReadAll(io.LimitReader(rd, s.maxSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if int64(len(b)) > s.maxSize {
		return nil, fmt.Errorf("%s: over %d bytes", p, s.maxSize)
	}
	return b, nil
}
