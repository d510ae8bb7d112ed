package release

import (
	"context"
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// EARProfile is the eat_profile of the tokens this service accepts
// (draft-ietf-rats-ear as implemented by veraison/ear).
const EARProfile = "tag:github.com,2023:veraison/ear"

// Reasons a token is refused. Verify wraps one of these.
var (
	ErrToken       = errors.New("token invalid")    // signature, alg, iss, aud, exp, nbf, iat
	ErrProfile     = errors.New("not an EAR token") // eat_profile / submods missing
	ErrWrongDevice = errors.New("token is for another device")
	ErrNonce       = errors.New("nonce not issued to this caller, expired or used")
	ErrNotAffirm   = errors.New("attestation status is not affirming")
	ErrRevoked     = errors.New("token revoked or unknown to the hub")
	ErrHub         = errors.New("hub status check failed")
)

// Claims are the claims the service reads from an EAR token.
type Claims struct {
	jwt.RegisteredClaims
	Profile string `json:"eat_profile"`
	Nonce   string `json:"eat_nonce"`
	Submods map[string]struct {
		Status   string         `json:"ear.status"`
		PolicyID string         `json:"ear.appraisal-policy-id"`
		Vector   map[string]int `json:"ear.trustworthiness-vector"`
	} `json:"submods"`
	State   string   `json:"rat.state"`
	Reasons []string `json:"rat.reasons"`
}

// Verifier checks tokens against the hub.
type Verifier struct {
	HubURL   string // base URL: JWKS at /.well-known/jwks.json, status at /v1/tokens/{id}/status
	Issuer   string // expected iss
	Audience string // this service's audience
	Client   *http.Client
	Leeway   time.Duration    // clock skew allowed on exp/nbf/iat (default 5 s)
	Now      func() time.Time // tests
	Nonces   *Nonces
	// AcceptUnverifiedPlatformUnsafe also accepts a "warning" result whose
	// only shortfall is that the hub made no claim about the hardware (no
	// EK certificate chain: TOFU) and the boot configuration (no verified
	// firmware event log), as for a simulated TPM in `make demo`. See
	// unverifiedPlatformOnly for exactly what passes. Such a machine's TPM
	// may be a software TPM under an attacker's control; never set this
	// where that matters.
	AcceptUnverifiedPlatformUnsafe bool
	// JWKSRefresh is the least time between JWKS fetches for unknown kids
	// (default 1 s): short, because right after a hub key rotation every
	// new token carries a kid the cache does not have yet.
	JWKSRefresh time.Duration

	once sync.Once
	keys *KeySet
}

func (v *Verifier) client() *http.Client {
	if v.Client != nil {
		return v.Client
	}
	return http.DefaultClient
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

// Verify accepts token only if every check passes, in this order (cheap,
// local, cryptographic checks before anything that consumes state or asks
// the network):
//
//  1. ES256 signature by a key of the hub's JWKS (fetched over HTTP);
//     any other alg is refused (no "none", no HMAC-with-public-key).
//  2. iss, aud, exp (required), nbf, iat within Leeway.
//  3. EAR profile, and every submodule's ear.status is "affirming".
//  4. sub is the caller's device id.
//  5. eat_nonce is a nonce this service issued to that device (consumed).
//  6. the hub's status endpoint says the token is active (not revoked).
func (v *Verifier) Verify(ctx context.Context, token, deviceID string) (*Claims, error) {
	v.once.Do(func() {
		refresh := v.JWKSRefresh
		if refresh == 0 {
			refresh = time.Second
		}
		v.keys = &KeySet{URL: v.HubURL + "/.well-known/jwks.json", Client: v.client(), MinRefresh: refresh}
	})
	leeway := v.Leeway
	if leeway == 0 {
		leeway = 5 * time.Second
	}
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodES256.Alg()}),
		jwt.WithIssuer(v.Issuer),
		jwt.WithAudience(v.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(v.now),
	)
	var c Claims
	_, err := p.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("no kid")
		}
		return v.keys.Key(ctx, kid)
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrToken, err)
	}
	if c.Profile != EARProfile || len(c.Submods) == 0 {
		return nil, fmt.Errorf("%w: profile %q, %d submods", ErrProfile, c.Profile, len(c.Submods))
	}
	for name, s := range c.Submods {
		if s.Status == "affirming" {
			continue
		}
		if v.AcceptUnverifiedPlatformUnsafe && unverifiedPlatformOnly(&c, name) {
			continue
		}
		return nil, fmt.Errorf("%w: submod %s is %q", ErrNotAffirm, name, s.Status)
	}
	if c.Subject != deviceID {
		return nil, fmt.Errorf("%w: token for %q, caller is %q", ErrWrongDevice, c.Subject, deviceID)
	}
	if v.Nonces == nil || !v.Nonces.Consume(c.Nonce, deviceID) {
		return nil, ErrNonce
	}
	if c.ID == "" {
		return nil, fmt.Errorf("%w: no jti", ErrRevoked)
	}
	if err := v.checkStatus(ctx, c.ID); err != nil {
		return nil, err
	}
	return &c, nil
}

// checkStatus asks the hub on every request (no cache): a revocation is
// seen by the very next request, and an unreachable hub means no secret.
func (v *Verifier) checkStatus(ctx context.Context, id string) error {
	u := v.HubURL + "/v1/tokens/" + url.PathEscape(id) + "/status"
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrHub, err)
	}
	resp, err := v.client().Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrHub, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%w: hub does not know token %s", ErrRevoked, id)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: %s", ErrHub, resp.Status)
	}
	var st struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&st); err != nil {
		return fmt.Errorf("%w: %w", ErrHub, err)
	}
	if st.ID != id || st.Status != "active" {
		return fmt.Errorf("%w: token %s is %q", ErrRevoked, id, st.Status)
	}
	return nil
}

func ecdsaP256() elliptic.Curve { return elliptic.P256() }

// unverifiedPlatformOnly reports whether submodule name of c is a "warning"
// that says nothing worse than "hardware and configuration not verified":
// instance identity and executables affirming (AR4SI 2..31), hardware and
// configuration exactly "no claim" (0), the hub's state TRUSTED, a policy
// id, and every reason the hub gives about one of those two claims (no
// staleness, no hub-state, no revocation reason). Anything else, including
// a claim this code does not know, is refused.
func unverifiedPlatformOnly(c *Claims, name string) bool {
	s := c.Submods[name]
	if s.Status != "warning" || c.State != "TRUSTED" || s.PolicyID == "" {
		return false
	}
	affirming := func(v int) bool { return v >= 2 && v <= 31 }
	for claim, v := range s.Vector {
		switch claim {
		case "instance-identity", "executables":
			if !affirming(v) {
				return false
			}
		case "hardware", "configuration", "file-system", "runtime-opaque", "storage-opaque", "sourced-data":
			if v != 0 && !affirming(v) {
				return false
			}
		default:
			return false
		}
	}
	if !affirming(s.Vector["instance-identity"]) || !affirming(s.Vector["executables"]) {
		return false
	}
	for _, r := range c.Reasons {
		if !strings.HasPrefix(r, "hardware: ") && !strings.HasPrefix(r, "configuration: ") {
			return false
		}
	}
	return true
}
