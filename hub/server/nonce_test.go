package server

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/ratatouille/rat/hub/store"
)

// TestNonceKey: the nonce key is made once per store and read back by
// every later start (so nonces issued before a restart stay valid), and
// two stores have different keys.
func TestNonceKey(t *testing.T) {
	open := func(path string) *store.Bolt {
		st, err := store.OpenBolt(path)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	dir := t.TempDir()
	st := open(filepath.Join(dir, "a.db"))
	k1, err := nonceKey(st)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	st = open(filepath.Join(dir, "a.db"))
	k2, err := nonceKey(st)
	st.Close()
	if err != nil || !bytes.Equal(k1, k2) || len(k1) != 32 {
		t.Fatalf("key after reopening: %x (%v), want %x", k2, err, k1)
	}
	other := open(filepath.Join(dir, "b.db"))
	defer other.Close()
	k3, err := nonceKey(other)
	if err != nil || bytes.Equal(k1, k3) {
		t.Fatalf("another store's key %x (%v) equals the first's", k3, err)
	}
}
