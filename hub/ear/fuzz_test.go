package ear

import (
	"bytes"
	"crypto"
	"encoding/base64"
	"testing"
	"time"
)

const cryptoSHA256 = crypto.SHA256

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func FuzzDecodeTokenRequest(f *testing.F) {
	f.Add([]byte(`{"device_id":"dev-1","nonce":"0123456789","audience":"rp"}`))
	f.Add([]byte(`{"device_id":"dev-1"}{}`))
	f.Add([]byte(`{"device_id":1}`))
	f.Add([]byte(`{"x":"y"}`))
	f.Add([]byte(` `))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := DecodeTokenRequest(bytes.NewReader(b))
		if err != nil {
			return
		}
		if len(b) > maxRequestBody+1 {
			t.Fatalf("accepted %d-byte body", len(b))
		}
		_ = req
	})
}

func FuzzParseKeyFile(f *testing.F) {
	k, err := NewSigningKey(time.Unix(1700000000, 0))
	if err != nil {
		f.Fatal(err)
	}
	good, _ := MarshalKeyFile(k)
	f.Add(good)
	k.Retired, k.KeepUntil = k.Created.Add(time.Hour), k.Created.Add(2*time.Hour)
	retired, _ := MarshalKeyFile(k)
	f.Add(retired)
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Add(append(good, []byte("junk")...))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParseKeyFile(b)
		if err != nil {
			return
		}
		if k.Private == nil || k.ID != Thumbprint(&k.Private.PublicKey) {
			t.Fatal("parsed key without matching id")
		}
		// What parses must survive a round trip.
		again, err := MarshalKeyFile(k)
		if err != nil {
			t.Fatal(err)
		}
		if k2, err := ParseKeyFile(again); err != nil || k2.ID != k.ID {
			t.Fatalf("round trip: %v", err)
		}
	})
}
