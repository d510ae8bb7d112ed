package ear

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// SigningKey is one hub token-signing key (ECDSA P-256, ES256).
type SigningKey struct {
	ID      string // RFC 7638 JWK thumbprint, used as "kid"
	Private *ecdsa.PrivateKey
	Created time.Time
	// Retired is when the key stopped signing; zero while it is the active key.
	Retired time.Time
	// KeepUntil is when the last token this key may have signed expires;
	// the public key stays in the JWKS until then so rotation never
	// invalidates a live token. Zero while active.
	KeepUntil time.Time
}

// KeyStore persists signing keys. Implementations must keep private keys
// readable only by the hub.
type KeyStore interface {
	// Load returns every stored key, in any order.
	Load() ([]SigningKey, error)
	// Save writes k, replacing a stored key with the same ID.
	Save(k SigningKey) error
	// Delete removes the key with the given ID; deleting a missing key is not an error.
	Delete(id string) error
}

// NewSigningKey generates a P-256 key and names it by its JWK thumbprint.
func NewSigningKey(now time.Time) (SigningKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), randReader)
	if err != nil {
		return SigningKey{}, fmt.Errorf("ear: generating signing key: %w", err)
	}
	return SigningKey{ID: Thumbprint(&priv.PublicKey), Private: priv, Created: now.UTC()}, nil
}

// Thumbprint is the RFC 7638 SHA-256 JWK thumbprint of a P-256 public key,
// base64url without padding.
func Thumbprint(pub *ecdsa.PublicKey) string {
	x, y := coord(pub)
	// RFC 7638 §3.2: members in lexicographic order, no whitespace.
	s := `{"crv":"P-256","kty":"EC","x":"` + x + `","y":"` + y + `"}`
	sum := sha256.Sum256([]byte(s))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func coord(pub *ecdsa.PublicKey) (x, y string) {
	b, err := pub.Bytes() // 0x04 || X || Y, 32 bytes each for P-256
	if err != nil || len(b) != 65 {
		panic("ear: not a P-256 public key")
	}
	return base64.RawURLEncoding.EncodeToString(b[1:33]), base64.RawURLEncoding.EncodeToString(b[33:])
}

// JWK is one public key of the JWKS.
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

// JWKS is the document served at /.well-known/jwks.json.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

func publicJWK(k SigningKey) JWK {
	x, y := coord(&k.Private.PublicKey)
	return JWK{Kty: "EC", Crv: "P-256", X: x, Y: y, Kid: k.ID, Alg: "ES256", Use: "sig"}
}

// FileKeyStore keeps one PEM file per key in a directory (mode 0700, files
// 0600). The PEM headers carry the key's lifecycle times.
type FileKeyStore struct {
	Dir string
}

const pemType = "PRIVATE KEY"

// Load reads every *.pem in the directory. A file that does not parse is an
// error, not skipped: silently dropping a key would remove it from the JWKS
// and break live tokens.
func (s FileKeyStore) Load() ([]SigningKey, error) {
	ents, err := os.ReadDir(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ear: reading key directory %s: %w", s.Dir, err)
	}
	var keys []SigningKey
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".pem") {
			continue
		}
		p := filepath.Join(s.Dir, e.Name())
		info, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("ear: key file %s: %w", p, err)
		}
		if info.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("ear: key file %s is readable by others (mode %o)", p, info.Mode().Perm())
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("ear: reading key file %s: %w", p, err)
		}
		k, err := ParseKeyFile(b)
		if err != nil {
			return nil, fmt.Errorf("ear: key file %s: %w", p, err)
		}
		if e.Name() != k.ID+".pem" {
			return nil, fmt.Errorf("ear: key file %s holds key %s", p, k.ID)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// Save writes the key atomically (temporary file, fsync, rename).
func (s FileKeyStore) Save(k SigningKey) error {
	b, err := MarshalKeyFile(k)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("ear: creating key directory %s: %w", s.Dir, err)
	}
	f, err := os.CreateTemp(s.Dir, ".key-*")
	if err != nil {
		return fmt.Errorf("ear: saving key %s: %w", k.ID, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("ear: saving key %s: %w", k.ID, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("ear: saving key %s: %w", k.ID, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("ear: saving key %s: %w", k.ID, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("ear: saving key %s: %w", k.ID, err)
	}
	if err := os.Rename(tmp, filepath.Join(s.Dir, k.ID+".pem")); err != nil {
		return fmt.Errorf("ear: saving key %s: %w", k.ID, err)
	}
	return nil
}

// Delete removes the key's file.
func (s FileKeyStore) Delete(id string) error {
	if strings.ContainsAny(id, `/\`) || id == "" || id[0] == '.' {
		return fmt.Errorf("ear: deleting key: bad id %q", id)
	}
	err := os.Remove(filepath.Join(s.Dir, id+".pem"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("ear: deleting key %s: %w", id, err)
	}
	return nil
}

// MarshalKeyFile encodes k as a PKCS#8 PEM block with lifecycle headers.
func MarshalKeyFile(k SigningKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.Private)
	if err != nil {
		return nil, fmt.Errorf("ear: encoding key %s: %w", k.ID, err)
	}
	h := map[string]string{"Created": k.Created.UTC().Format(time.RFC3339Nano)}
	if !k.Retired.IsZero() {
		h["Retired"] = k.Retired.UTC().Format(time.RFC3339Nano)
		h["Keep-Until"] = k.KeepUntil.UTC().Format(time.RFC3339Nano)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemType, Headers: h, Bytes: der}), nil
}

// ParseKeyFile decodes a key written by MarshalKeyFile. Only P-256 ECDSA
// keys are accepted, since the JWKS advertises ES256 for every key.
func ParseKeyFile(b []byte) (SigningKey, error) {
	blk, rest := pem.Decode(b)
	if blk == nil || blk.Type != pemType {
		return SigningKey{}, errors.New("no PRIVATE KEY PEM block")
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		return SigningKey{}, errors.New("trailing data after PEM block")
	}
	anyKey, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return SigningKey{}, fmt.Errorf("parsing PKCS#8 key: %w", err)
	}
	priv, ok := anyKey.(*ecdsa.PrivateKey)
	if !ok || priv.Curve != elliptic.P256() {
		return SigningKey{}, fmt.Errorf("key is %T, want ECDSA P-256", anyKey)
	}
	k := SigningKey{ID: Thumbprint(&priv.PublicKey), Private: priv}
	if k.Created, err = parseTime(blk.Headers, "Created", true); err != nil {
		return SigningKey{}, err
	}
	if k.Retired, err = parseTime(blk.Headers, "Retired", false); err != nil {
		return SigningKey{}, err
	}
	if k.KeepUntil, err = parseTime(blk.Headers, "Keep-Until", !k.Retired.IsZero()); err != nil {
		return SigningKey{}, err
	}
	return k, nil
}

func parseTime(h map[string]string, name string, required bool) (time.Time, error) {
	v, ok := h[name]
	if !ok {
		if required {
			return time.Time{}, fmt.Errorf("missing %s header", name)
		}
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s header: %w", name, err)
	}
	return t, nil
}

// keyring is the in-memory set of keys: one active, others retired but
// still published.
type keyring struct {
	active  SigningKey
	retired []SigningKey
}

func (r *keyring) jwks() JWKS {
	out := JWKS{Keys: []JWK{publicJWK(r.active)}}
	for _, k := range r.retired {
		out.Keys = append(out.Keys, publicJWK(k))
	}
	return out
}

// loadKeyring picks the newest non-retired key as active; older
// non-retired keys (a crash mid-rotation) are retired now.
func loadKeyring(keys []SigningKey, now time.Time, lifetime time.Duration, store KeyStore) (*keyring, error) {
	sort.Slice(keys, func(i, j int) bool { return keys[i].Created.Before(keys[j].Created) })
	r := &keyring{}
	var candidates []SigningKey
	for _, k := range keys {
		if k.Retired.IsZero() {
			candidates = append(candidates, k)
		} else {
			r.retired = append(r.retired, k)
		}
	}
	if len(candidates) == 0 {
		k, err := NewSigningKey(now)
		if err != nil {
			return nil, err
		}
		if err := store.Save(k); err != nil {
			return nil, err
		}
		candidates = []SigningKey{k}
	}
	r.active = candidates[len(candidates)-1]
	for _, k := range candidates[:len(candidates)-1] {
		k.Retired, k.KeepUntil = now, now.Add(lifetime+maxClockSkew)
		if err := store.Save(k); err != nil {
			return nil, err
		}
		r.retired = append(r.retired, k)
	}
	return r, nil
}

// MarshalJSON keeps the JWKS compact and stable.
func (j JWKS) MarshalJSON() ([]byte, error) {
	type plain JWKS
	if j.Keys == nil {
		j.Keys = []JWK{}
	}
	return json.Marshal(plain(j))
}
