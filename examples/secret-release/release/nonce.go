package release

import (
	"crypto/rand"
	"encoding/base64"
	"sync"
	"time"
)

// Nonces are the service's own single-use challenges. A token is only
// accepted if it carries a nonce this service handed to the same device
// shortly before, so a token captured elsewhere cannot be replayed here.
type Nonces struct {
	TTL time.Duration
	Now func() time.Time

	mu sync.Mutex
	m  map[string]nonceEntry
}

type nonceEntry struct {
	device string
	exp    time.Time
}

func (n *Nonces) now() time.Time {
	if n.Now != nil {
		return n.Now()
	}
	return time.Now()
}

// New returns a fresh nonce for deviceID (32 random bytes, base64url: 43
// characters, within EAR's 8..88).
func (n *Nonces) New(deviceID string) (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	s := base64.RawURLEncoding.EncodeToString(b[:])
	ttl := n.TTL
	if ttl == 0 {
		ttl = 2 * time.Minute
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil {
		n.m = map[string]nonceEntry{}
	}
	now := n.now()
	for k, e := range n.m {
		if now.After(e.exp) {
			delete(n.m, k)
		}
	}
	n.m[s] = nonceEntry{device: deviceID, exp: now.Add(ttl)}
	return s, nil
}

// Consume reports whether nonce was issued to deviceID and is unexpired,
// and makes it unusable either way.
func (n *Nonces) Consume(nonce, deviceID string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	e, ok := n.m[nonce]
	if !ok {
		return false
	}
	delete(n.m, nonce)
	return e.device == deviceID && !n.now().After(e.exp)
}
