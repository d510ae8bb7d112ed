package store

import (
	"encoding/hex"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// FuzzDecodeDevice feeds the device-record decoder arbitrary bytes (the
// store's own records, but a damaged or foreign file must not crash the
// hub): it must refuse or decode without panicking, and a record it
// decodes must encode and decode again to the same device (what the hub
// writes back after an attestation is what it read).
func FuzzDecodeDevice(f *testing.F) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	d := &Device{Key: "fleet/dev", ID: "dev", Group: "g", State: Trusted, LastVerified: t0,
		Nonces: NonceWindow{{Idx: 1, Value: []byte("nonce-one-32-bytes-long-........"), At: t0}, {Idx: 2, Value: []byte{1, 2, 3}, At: t0.Add(time.Second)}}}
	if b, err := encodeDevice(d); err == nil {
		f.Add(b)
	}
	if h, err := os.ReadFile("testdata/device-cbor-9c4e5f4.hex"); err == nil {
		if b, err := hex.DecodeString(strings.TrimSpace(string(h))); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"key":"fleet/dev","id":"dev","state":"TRUSTED"}`))
	f.Add(append(append([]byte(nil), selfDescribed...), 0xa0))
	f.Fuzz(func(t *testing.T, b []byte) {
		var d Device
		if err := decodeDevice(b, &d); err != nil {
			return
		}
		var brief DeviceBrief
		_ = decodeDevice(b, &brief) // must not panic either
		enc, err := encodeDevice(&d)
		if err != nil {
			return // e.g. a time the encoder cannot represent; the hub would refuse to save it
		}
		var again Device
		if err := decodeDevice(enc, &again); err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		enc2, err := encodeDevice(&again)
		if err != nil {
			t.Fatalf("second encode: %v", err)
		}
		if !reflect.DeepEqual(enc, enc2) {
			t.Fatalf("encode(decode(encode(d))) != encode(d):\n%x\n%x", enc, enc2)
		}
	})
}
