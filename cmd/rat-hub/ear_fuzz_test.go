package main

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ratatouille/rat/evidence/protocol"
	"github.com/ratatouille/rat/hub/store"
)

// FuzzParseRPCredentials: any input either fails or yields named entries
// whose hashes come from valid 64-hex digests, no name twice.
func FuzzParseRPCredentials(f *testing.F) {
	sum := sha256.Sum256([]byte("x"))
	good := "vault sha256:" + hex.EncodeToString(sum[:])
	for _, s := range []string{good, "# c\n" + good + "\n", good + "\n" + good, "a sha256:zz", "a b c", "", "\x00", "a sha256:" + strings.Repeat("0", 63)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		rps, err := parseRPCredentials(strings.NewReader(in), "fuzz")
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, c := range rps {
			if c.name == "" || seen[c.name] || !strings.Contains(strings.ToLower(in), hex.EncodeToString(c.hash[:])) {
				t.Fatalf("entry %+v from %q", c, in)
			}
			seen[c.name] = true
		}
	})
}

// FuzzDeviceTokenRequest: whatever a device sends as nonce and audience,
// the hub either refuses with a reason or signs a token whose eat_nonce and
// aud are exactly what was asked (or the default audience).
func FuzzDeviceTokenRequest(f *testing.F) {
	dir := f.TempDir()
	st, err := store.OpenBolt(filepath.Join(dir, "hub.db"))
	if err != nil {
		f.Fatal(err)
	}
	defer st.Close()
	d := &store.Device{Key: "default/edge", ID: "edge", Fleet: "default", Group: "g", State: store.Trusted, AKPublic: []byte{1},
		PolicyDigest: "sha256:ab", LastVerified: time.Now().Add(time.Hour)}
	if err := st.Save(d, nil, 0, nil); err != nil {
		f.Fatal(err)
	}
	ts, err := newTokenService(tokenOptions{Lifetime: time.Minute, MaxAge: time.Minute, KeyDir: filepath.Join(dir, "keys"),
		DBPath: filepath.Join(dir, "ear.db"), Issuer: testIssuer, Audiences: []string{"rp", "other"}},
		st, "default", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		f.Fatal(err)
	}
	defer ts.Close()
	for _, s := range [][2]string{{"nonce-123456", ""}, {"nonce-123456", "other"}, {"short", ""}, {"nonce\x00123456", "rp"},
		{"nonce-123456", "nope"}, {"nonce-é-123456", ""}, {strings.Repeat("n", 89), ""}} {
		f.Add([]byte(s[0]), s[1])
	}
	f.Fuzz(func(t *testing.T, nonce []byte, aud string) {
		r := ts.deviceToken("default/edge", &protocol.TokenRequest{Nonce: nonce, Audience: aud})
		if r.Token == "" {
			if r.Reason == "" {
				t.Fatal("refusal without a reason")
			}
			return
		}
		want := aud
		if want == "" {
			want = "rp"
		}
		if got := claimString(t, r.Token, "eat_nonce"); got != string(nonce) {
			t.Fatalf("eat_nonce %q, asked %q", got, nonce)
		}
		if got := claimString(t, r.Token, "aud"); got != want {
			t.Fatalf("aud %q, want %q", got, want)
		}
	})
}
