package ear

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TokenRecord is what the hub remembers of an issued token.
type TokenRecord struct {
	ID        string    `json:"id"`
	DeviceID  string    `json:"device_id"`
	Audience  string    `json:"audience"`
	KeyID     string    `json:"kid"`
	Status    string    `json:"ear_status"` // EAR status the token carries
	IssuedAt  time.Time `json:"iat"`
	ExpiresAt time.Time `json:"exp"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	Reason    string    `json:"reason,omitempty"`
}

// DeviceRecord marks a device whose tokens are revoked and which gets no
// affirming token until Reinstate.
type DeviceRecord struct {
	DeviceID  string    `json:"device_id"`
	RevokedAt time.Time `json:"revoked_at"`
	Reason    string    `json:"reason,omitempty"`
}

// Persister is the hook that keeps revocation state across restarts (the
// hub's bbolt store implements it, or BoltPersister here). Errors make the
// Issuer fail closed: no token is issued that could not be recorded.
type Persister interface {
	PutToken(TokenRecord) error
	DeleteToken(id string) error
	PutDevice(DeviceRecord) error
	DeleteDevice(deviceID string) error
	Load() ([]TokenRecord, []DeviceRecord, error)
}

type nopPersister struct{}

func (nopPersister) PutToken(TokenRecord) error                   { return nil }
func (nopPersister) DeleteToken(string) error                     { return nil }
func (nopPersister) PutDevice(DeviceRecord) error                 { return nil }
func (nopPersister) DeleteDevice(string) error                    { return nil }
func (nopPersister) Load() ([]TokenRecord, []DeviceRecord, error) { return nil, nil, nil }

// RevocationEvent tells subscribers that a device's tokens were revoked.
type RevocationEvent struct {
	DeviceID  string    `json:"device_id"`
	TokenIDs  []string  `json:"token_ids"` // tokens still unexpired at revocation
	RevokedAt time.Time `json:"revoked_at"`
	Reason    string    `json:"reason,omitempty"`
}

// Token status values of the status endpoint.
const (
	TokenActive  = "active"
	TokenRevoked = "revoked"
	TokenExpired = "expired"
)

// TokenStatus is the answer of a status lookup.
type TokenStatus struct {
	ID        string    `json:"id"`
	Status    string    `json:"status"` // active, revoked, expired
	ExpiresAt time.Time `json:"expires_at"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// Status looks a token up by id. ok is false for ids the hub never issued
// or has forgotten (long expired).
func (i *Issuer) Status(id string) (TokenStatus, bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	t, ok := i.tokens[id]
	if !ok {
		return TokenStatus{}, false
	}
	s := TokenStatus{ID: t.ID, ExpiresAt: t.ExpiresAt, RevokedAt: t.RevokedAt}
	switch {
	case !t.RevokedAt.IsZero():
		s.Status = TokenRevoked
	case !i.now().Before(t.ExpiresAt):
		s.Status = TokenExpired
	default:
		s.Status = TokenActive
	}
	return s, true
}

// Revoke revokes every outstanding token of deviceID and refuses it
// affirming tokens until Reinstate. The revocation is in effect in memory
// even when persisting it fails (the error says so): failing closed.
func (i *Issuer) Revoke(deviceID string) error {
	return i.RevokeWithReason(deviceID, "")
}

// RevokeWithReason is Revoke with a reason for the event and the records.
func (i *Issuer) RevokeWithReason(deviceID, reason string) error {
	if deviceID == "" {
		return errors.New("ear: revoke: empty device id")
	}
	i.mu.Lock()
	now := i.now().UTC()
	var errs []error
	dr := DeviceRecord{DeviceID: deviceID, RevokedAt: now, Reason: reason}
	if prev, ok := i.revoked[deviceID]; ok {
		dr.RevokedAt = prev.RevokedAt
	}
	i.revoked[deviceID] = dr
	if err := i.persist.PutDevice(dr); err != nil {
		errs = append(errs, err)
	}
	ev := RevocationEvent{DeviceID: deviceID, RevokedAt: now, Reason: reason, TokenIDs: []string{}}
	for id := range i.byDevice[deviceID] {
		t := i.tokens[id]
		if !t.RevokedAt.IsZero() {
			continue
		}
		t.RevokedAt, t.Reason = now, reason
		i.tokens[id] = t
		if err := i.persist.PutToken(t); err != nil {
			errs = append(errs, err)
		}
		if now.Before(t.ExpiresAt) {
			ev.TokenIDs = append(ev.TokenIDs, id)
		}
	}
	sort.Strings(ev.TokenIDs)
	subs := make([]func(RevocationEvent), 0, len(i.subs))
	for _, f := range i.subs {
		subs = append(subs, f)
	}
	hooks := append([]string(nil), i.hooks...)
	var set string
	if len(hooks) > 0 {
		var err error
		if set, err = i.signEventLocked(ev); err != nil {
			errs = append(errs, err)
			hooks = nil
		}
	}
	i.mu.Unlock()

	for _, f := range subs {
		f(ev)
	}
	for _, h := range hooks {
		i.pending.Add(1)
		go i.push(h, set)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("ear: revoking %s (in effect, not persisted): %w", deviceID, err)
	}
	return nil
}

// Reinstate lets a revoked device get affirming tokens again (after it
// re-attested TRUSTED). Tokens revoked earlier stay revoked.
func (i *Issuer) Reinstate(deviceID string) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if err := i.persist.DeleteDevice(deviceID); err != nil {
		return fmt.Errorf("ear: reinstating %s: %w", deviceID, err)
	}
	delete(i.revoked, deviceID)
	return nil
}

// Revoked reports whether deviceID is revoked.
func (i *Issuer) Revoked(deviceID string) bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	_, ok := i.revoked[deviceID]
	return ok
}

// Subscribe calls f with every revocation, synchronously after the
// revocation is in effect; f must not block. The returned func unsubscribes.
func (i *Issuer) Subscribe(f func(RevocationEvent)) (cancel func()) {
	i.mu.Lock()
	defer i.mu.Unlock()
	id := i.nextSub
	i.nextSub++
	i.subs[id] = f
	return func() {
		i.mu.Lock()
		defer i.mu.Unlock()
		delete(i.subs, id)
	}
}

// EventRevoked is the event type URI of a revocation Security Event Token.
const EventRevoked = "https://ratatouille.dev/secevent/attestation-revoked"

// signEventLocked makes a Security Event Token (RFC 8417) signed with the
// active key, so a webhook receiver verifies it against the same JWKS.
func (i *Issuer) signEventLocked(ev RevocationEvent) (string, error) {
	jti, err := newID()
	if err != nil {
		return "", err
	}
	claims := jwt.MapClaims{
		"iss": i.iss,
		"iat": ev.RevokedAt.Unix(),
		"jti": jti,
		"sub": ev.DeviceID,
		"events": map[string]any{
			EventRevoked: ev,
		},
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	t.Header["kid"] = i.ring.active.ID
	t.Header["typ"] = "secevent+jwt"
	s, err := t.SignedString(i.ring.active.Private)
	if err != nil {
		return "", fmt.Errorf("ear: signing revocation event: %w", err)
	}
	return s, nil
}

// push delivers a SET with a few retries. Relying parties must still use
// the status endpoint; a push is a prompt, not the source of truth.
func (i *Issuer) push(hook, set string) {
	defer i.pending.Done()
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := i.pushOnce(hook, set)
		if err == nil {
			return
		}
		if attempt == 4 {
			i.logf("ear: revocation push to %s failed, giving up: %v", hook, err)
			return
		}
		time.Sleep(backoff)
		backoff *= 3
	}
}

func (i *Issuer) pushOnce(hook, set string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, hook, bytes.NewReader([]byte(set)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/secevent+jwt")
	req.Header.Set("Accept", "application/json")
	resp, err := i.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	// RFC 8935 §2.2: 202 Accepted on success.
	if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}
