package ear

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	vear "github.com/veraison/ear"
)

var randReader = rand.Reader

// SubmodName is the EAR submodule that carries the TPM appraisal.
const SubmodName = "tpm"

// Requester says who asked for a token; it is recorded in the "rat.requester" claim.
const (
	RequesterDevice       = "device"
	RequesterRelyingParty = "relying-party"
)

// Defaults.
const (
	DefaultLifetime = 5 * time.Minute
	DefaultMaxAge   = 5 * time.Minute
	DefaultIssuer   = "ratatouille-hub"
)

// Limits on request fields. The nonce bounds are EAR's (eat_nonce is 8 to 88 characters).
const (
	MinNonceLen = 8
	MaxNonceLen = 88
	maxIDLen    = 256
)

// Option configures an Issuer.
type Option func(*Issuer) error

// WithLifetime sets how long tokens are valid (default 5 minutes). Short,
// because a token says "trusted at iat" and revocation is only seen by
// relying parties that ask the status endpoint.
func WithLifetime(d time.Duration) Option {
	return func(i *Issuer) error {
		if d <= 0 || d > 24*time.Hour {
			return fmt.Errorf("ear: lifetime %s out of range (0, 24h]", d)
		}
		i.lifetime = d
		return nil
	}
}

// WithMaxAge sets how old the last verified quote may be for an affirming
// status (default 5 minutes).
func WithMaxAge(d time.Duration) Option {
	return func(i *Issuer) error {
		if d <= 0 {
			return fmt.Errorf("ear: max age %s must be positive", d)
		}
		i.maxAge = d
		return nil
	}
}

// WithIssuerName sets the "iss" claim (default "ratatouille-hub"); relying
// parties pin it.
func WithIssuerName(s string) Option {
	return func(i *Issuer) error {
		if s == "" {
			return errors.New("ear: empty issuer name")
		}
		i.iss = s
		return nil
	}
}

// WithVerifierID sets ear.verifier-id (build and developer).
func WithVerifierID(build, developer string) Option {
	return func(i *Issuer) error {
		if build == "" || developer == "" {
			return errors.New("ear: verifier id needs build and developer")
		}
		i.build, i.developer = build, developer
		return nil
	}
}

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) Option {
	return func(i *Issuer) error { i.now = now; return nil }
}

// WithPersister keeps token records and device revocations across restarts.
func WithPersister(p Persister) Option {
	return func(i *Issuer) error { i.persist = p; return nil }
}

// WithRotateEvery makes Issue rotate the signing key once the active key is
// older than d (zero, the default, rotates only on Rotate).
func WithRotateEvery(d time.Duration) Option {
	return func(i *Issuer) error {
		if d < 0 {
			return fmt.Errorf("ear: rotation interval %s is negative", d)
		}
		i.rotateEvery = d
		return nil
	}
}

// WithWebhook registers a relying party URL (https only) that receives each
// revocation as a signed Security Event Token (RFC 8417, pushed as in RFC 8935).
func WithWebhook(u string) Option {
	return func(i *Issuer) error { return i.addWebhook(u) }
}

// WithHTTPClient sets the client for webhook pushes (default: 5 s timeout).
func WithHTTPClient(c *http.Client) Option {
	return func(i *Issuer) error { i.client = c; return nil }
}

// WithLogf receives delivery errors of webhook pushes (never token contents).
func WithLogf(f func(format string, args ...any)) Option {
	return func(i *Issuer) error { i.logf = f; return nil }
}

// Issuer makes and revokes attestation-result tokens.
type Issuer struct {
	keys        KeyStore
	persist     Persister
	lifetime    time.Duration
	maxAge      time.Duration
	rotateEvery time.Duration
	iss         string
	build       string
	developer   string
	now         func() time.Time
	client      *http.Client
	logf        func(string, ...any)

	mu       sync.Mutex
	ring     *keyring
	tokens   map[string]TokenRecord // by token id
	byDevice map[string]map[string]bool
	revoked  map[string]DeviceRecord // devices refused affirming tokens
	subs     map[int]func(RevocationEvent)
	nextSub  int
	hooks    []string
	pending  sync.WaitGroup
	pruned   time.Time // last pruneLocked run
}

// NewIssuer loads (or creates) signing keys from keys and restores state
// from the persister, if one is given.
func NewIssuer(keys KeyStore, opts ...Option) (*Issuer, error) {
	if keys == nil {
		return nil, errors.New("ear: no key store")
	}
	i := &Issuer{
		keys: keys, persist: nopPersister{},
		lifetime: DefaultLifetime, maxAge: DefaultMaxAge,
		iss: DefaultIssuer, build: "ratatouille-hub", developer: "ratatouille",
		now:    time.Now,
		client: &http.Client{Timeout: 5 * time.Second},
		logf:   func(string, ...any) {},
		tokens: map[string]TokenRecord{}, byDevice: map[string]map[string]bool{},
		revoked: map[string]DeviceRecord{}, subs: map[int]func(RevocationEvent){},
	}
	for _, o := range opts {
		if err := o(i); err != nil {
			return nil, err
		}
	}
	ks, err := keys.Load()
	if err != nil {
		return nil, fmt.Errorf("ear: loading signing keys: %w", err)
	}
	if i.ring, err = loadKeyring(ks, i.now(), i.lifetime, keys); err != nil {
		return nil, fmt.Errorf("ear: signing keys: %w", err)
	}
	toks, devs, err := i.persist.Load()
	if err != nil {
		return nil, fmt.Errorf("ear: loading revocation state: %w", err)
	}
	for _, t := range toks {
		i.remember(t)
	}
	for _, d := range devs {
		i.revoked[d.DeviceID] = d
	}
	return i, nil
}

// Token is an issued attestation result.
type Token struct {
	JWT       string
	ID        string
	DeviceID  string
	Status    string // EAR status: affirming, warning, contraindicated, none
	IssuedAt  time.Time
	ExpiresAt time.Time
	Reasons   []string // why the status is not affirming
}

// Issue makes a token for deviceID on behalf of an operator or relying party.
// It asks src for the device's current appraisal every time; a non-affirming
// appraisal yields a token with a non-affirming status (the relying party
// learns why), an appraisal error yields no token.
func (i *Issuer) Issue(ctx context.Context, src Source, deviceID, nonce, audience string) (Token, error) {
	return i.issue(ctx, src, deviceID, nonce, audience, RequesterRelyingParty)
}

// IssueForDevice is Issue for a device asking for its own token (the hub's
// MQTT side, after it authenticated the device as deviceID).
func (i *Issuer) IssueForDevice(ctx context.Context, src Source, deviceID, nonce, audience string) (Token, error) {
	return i.issue(ctx, src, deviceID, nonce, audience, RequesterDevice)
}

// ErrBadRequest wraps request-field problems (the handler maps it to 400).
var ErrBadRequest = errors.New("bad token request")

func checkField(name, v string, minLen, maxLen int) error {
	if len(v) < minLen || len(v) > maxLen {
		return fmt.Errorf("%w: %s must be %d to %d bytes, got %d", ErrBadRequest, name, minLen, maxLen, len(v))
	}
	for _, r := range v {
		if r < 0x21 || r == 0x7f {
			return fmt.Errorf("%w: %s contains control or space characters", ErrBadRequest, name)
		}
	}
	return nil
}

func (i *Issuer) issue(ctx context.Context, src Source, deviceID, nonce, audience, requester string) (Token, error) {
	if err := checkField("device_id", deviceID, 1, maxIDLen); err != nil {
		return Token{}, err
	}
	if err := checkField("nonce", nonce, MinNonceLen, MaxNonceLen); err != nil {
		return Token{}, err
	}
	if err := checkField("audience", audience, 1, maxIDLen); err != nil {
		return Token{}, err
	}
	if src == nil {
		return Token{}, errors.New("ear: no appraisal source")
	}
	a, err := src.Appraise(ctx, deviceID)
	if err != nil {
		return Token{}, fmt.Errorf("ear: appraising %s: %w", deviceID, err)
	}
	// A source answering for another device is a hub bug; never sign it.
	if a.DeviceID != deviceID {
		return Token{}, fmt.Errorf("ear: source answered for device %q, asked for %q", a.DeviceID, deviceID)
	}
	jti, err := newID()
	if err != nil {
		return Token{}, err
	}

	i.mu.Lock()
	defer i.mu.Unlock()
	now := i.now().UTC()
	if err := i.maybeRotateLocked(now); err != nil {
		return Token{}, err
	}
	dr, revoked := i.revoked[deviceID]
	j := Judge(a, now, i.maxAge, revoked)

	ar := vear.NewAttestationResult(SubmodName, i.build, i.developer)
	iat := now.Unix()
	ar.IssuedAt = &iat
	ar.Nonce = &nonce
	sub := ar.Submods[SubmodName]
	tv := j.Vector
	status := j.Status
	sub.TrustVector = &tv
	sub.Status = &status
	if pid := PolicyID(a); pid != "" {
		sub.AppraisalPolicyID = &pid
	}
	// MarshalJSON runs the ear package's own validation of the result.
	if _, err := ar.MarshalJSON(); err != nil {
		return Token{}, fmt.Errorf("ear: attestation result for %s: %w", deviceID, err)
	}
	claims := jwt.MapClaims(ar.AsMap())
	exp := now.Add(i.lifetime)
	claims["iss"] = i.iss
	claims["sub"] = deviceID
	claims["aud"] = audience
	claims["nbf"] = iat
	claims["exp"] = exp.Unix()
	claims["jti"] = jti
	claims["rat.requester"] = requester
	claims["rat.state"] = a.State
	if a.Group != "" {
		claims["rat.group"] = a.Group
	}
	if len(j.Reasons) > 0 {
		claims["rat.reasons"] = j.Reasons
	}
	key := i.ring.active
	t := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	t.Header["kid"] = key.ID
	signed, err := t.SignedString(key.Private)
	if err != nil {
		return Token{}, fmt.Errorf("ear: signing token for %s: %w", deviceID, err)
	}
	rec := TokenRecord{
		ID: jti, DeviceID: deviceID, Audience: audience, KeyID: key.ID,
		Status: status.String(), IssuedAt: now, ExpiresAt: exp,
	}
	if revoked {
		// Born revoked: the status endpoint agrees with the token's own
		// contraindicated status for a device that is revoked.
		rec.RevokedAt, rec.Reason = now, dr.Reason
	}
	// A token the hub could not revoke after a restart is not handed out.
	if err := i.persist.PutToken(rec); err != nil {
		return Token{}, fmt.Errorf("ear: recording token for %s: %w", deviceID, err)
	}
	i.remember(rec)
	i.pruneLocked(now)
	return Token{
		JWT: signed, ID: jti, DeviceID: deviceID, Status: status.String(),
		IssuedAt: now, ExpiresAt: exp, Reasons: j.Reasons,
	}, nil
}

func newID() (string, error) {
	var b [16]byte
	if _, err := randReader.Read(b[:]); err != nil {
		return "", fmt.Errorf("ear: token id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

func (i *Issuer) remember(t TokenRecord) {
	i.tokens[t.ID] = t
	if i.byDevice[t.DeviceID] == nil {
		i.byDevice[t.DeviceID] = map[string]bool{}
	}
	i.byDevice[t.DeviceID][t.ID] = true
}

// pruneLocked forgets tokens that expired more than one lifetime ago; their
// status becomes unknown, which relying parties refuse like expired.
func (i *Issuer) pruneLocked(now time.Time) {
	// Pruning walks every record; once every few seconds is plenty and
	// keeps Issue O(1) for large fleets. Keys are always checked (few).
	if now.Sub(i.pruned) >= pruneEvery || now.Before(i.pruned) {
		i.pruned = now
		i.pruneTokensLocked(now)
	}
	kept := i.ring.retired[:0]
	for _, k := range i.ring.retired {
		if now.After(k.KeepUntil) {
			if err := i.keys.Delete(k.ID); err == nil {
				continue
			}
		}
		kept = append(kept, k)
	}
	i.ring.retired = kept
}

const pruneEvery = 10 * time.Second

func (i *Issuer) pruneTokensLocked(now time.Time) {
	for id, t := range i.tokens {
		if now.Sub(t.ExpiresAt) > i.lifetime {
			if err := i.persist.DeleteToken(id); err != nil {
				continue // try again next time; keeping a record is safe
			}
			delete(i.tokens, id)
			delete(i.byDevice[t.DeviceID], id)
			if len(i.byDevice[t.DeviceID]) == 0 {
				delete(i.byDevice, t.DeviceID)
			}
		}
	}
}

func (i *Issuer) maybeRotateLocked(now time.Time) error {
	if i.rotateEvery > 0 && now.Sub(i.ring.active.Created) >= i.rotateEvery {
		return i.rotateLocked(now)
	}
	return nil
}

// Rotate makes a new signing key active. The previous key keeps verifying:
// it stays in the JWKS until every token it signed has expired.
func (i *Issuer) Rotate() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.rotateLocked(i.now().UTC())
}

func (i *Issuer) rotateLocked(now time.Time) error {
	k, err := NewSigningKey(now)
	if err != nil {
		return err
	}
	old := i.ring.active
	old.Retired, old.KeepUntil = now, now.Add(i.lifetime+maxClockSkew)
	// Retire the old key on disk first: a crash between the two saves then
	// leaves no active key and the next start makes a fresh one, never two.
	if err := i.keys.Save(old); err != nil {
		return fmt.Errorf("ear: rotating: %w", err)
	}
	if err := i.keys.Save(k); err != nil {
		return fmt.Errorf("ear: rotating: %w", err)
	}
	i.ring.retired = append(i.ring.retired, old)
	i.ring.active = k
	return nil
}

// JWKS returns the public keys relying parties verify tokens with.
func (i *Issuer) JWKS() JWKS {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.pruneLocked(i.now().UTC())
	return i.ring.jwks()
}

// ActiveKeyID is the kid of the key signing new tokens.
func (i *Issuer) ActiveKeyID() string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.ring.active.ID
}

// Lifetime is the configured token lifetime.
func (i *Issuer) Lifetime() time.Duration { return i.lifetime }

func (i *Issuer) addWebhook(u string) error {
	p, err := url.Parse(u)
	if err != nil {
		return fmt.Errorf("ear: webhook %q: %w", u, err)
	}
	// Revocation events tell relying parties to stop trusting a machine; an
	// attacker on the path must not be able to suppress or read them.
	if p.Scheme != "https" || p.Host == "" {
		return fmt.Errorf("ear: webhook %q: must be an https URL", u)
	}
	i.hooks = append(i.hooks, p.String())
	return nil
}

// AddWebhook registers a relying-party URL for revocation pushes.
func (i *Issuer) AddWebhook(u string) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.addWebhook(u)
}

// Close waits for pending webhook deliveries.
func (i *Issuer) Close() error {
	i.pending.Wait()
	return nil
}
