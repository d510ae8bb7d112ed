package store

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestNonceWindowEncoding checks that device records round-trip with
// every kind of nonce window, that the packed form is what a full window
// of issued nonces is written as (and is smaller), and that windows the
// packed form cannot hold exactly fall back to the array form.
func TestNonceWindowEncoding(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 11, 12, 123456789, time.UTC)
	full := make(NonceWindow, 64)
	for i := range full {
		full[i] = Nonce{Idx: uint64(1000 + i), Value: bytes.Repeat([]byte{byte(i)}, 32), At: t0.Add(time.Duration(i)*10*time.Second + time.Duration(i))}
	}
	for _, tc := range []struct {
		name   string
		w      NonceWindow
		packed bool
	}{
		{"nil", nil, false},
		{"full window", full, true},
		{"one", full[:1], true},
		{"indexes not consecutive, times going back", NonceWindow{{Idx: 9, Value: []byte{1}, At: t0}, {Idx: 3, Value: make([]byte, 300), At: t0.Add(-time.Hour)}}, true},
		{"empty value", NonceWindow{{Idx: 1, Value: []byte{}, At: t0}}, true},
		{"zero time", NonceWindow{{Idx: 1, Value: []byte{1, 2}}}, false},
		{"not UTC", NonceWindow{{Idx: 1, Value: []byte{1, 2}, At: t0.In(time.FixedZone("x", 3600))}}, false},
		{"before 1678", NonceWindow{{Idx: 1, Value: []byte{1}, At: time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC)}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := fullDevice("default/d1")
			d.Nonces = tc.w
			b, err := encodeDevice(d)
			if err != nil {
				t.Fatal(err)
			}
			var got Device
			if err := decodeDevice(b, &got); err != nil {
				t.Fatal(err)
			}
			if g, w := jsonOf(t, &got), jsonOf(t, d); g != w {
				t.Fatalf("read back\n%s\nwant\n%s", g, w)
			}
			for i := range got.Nonces {
				if !got.Nonces[i].At.Equal(tc.w[i].At) {
					t.Fatalf("nonce %d at %v, want %v", i, got.Nonces[i].At, tc.w[i].At)
				}
			}
			// The array form has the map keys of Nonce; the packed form not.
			arrayForm := bytes.Contains(b, []byte("value")) && bytes.Contains(b, []byte("idx"))
			if len(tc.w) > 0 && arrayForm == tc.packed {
				t.Fatalf("packed %v, want %v", !arrayForm, tc.packed)
			}
		})
	}
	d := fullDevice("default/d1")
	d.Nonces = full
	packed, _ := encodeDevice(d)
	array, _ := devEnc.Marshal([]Nonce(full))
	t.Logf("device record with a full window: %d bytes (the window as an array: %d bytes)", len(packed), len(array))
	if len(packed) >= len(array) {
		t.Fatalf("packed record %d bytes, the window alone as an array %d", len(packed), len(array))
	}
}

// TestNonceWindowCorrupt checks that a damaged packed window is an error,
// not a shorter window.
func TestNonceWindowCorrupt(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 11, 12, 0, time.UTC)
	w := NonceWindow{{Idx: 1, Value: bytes.Repeat([]byte{7}, 32), At: t0}, {Idx: 2, Value: bytes.Repeat([]byte{8}, 32), At: t0.Add(time.Second)}}
	b, err := w.MarshalCBOR()
	if err != nil {
		t.Fatal(err)
	}
	var body []byte
	if err := devDec.Unmarshal(b, &body); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"empty", []byte{}},
		{"unknown version", append([]byte{2}, body[1:]...)},
		{"truncated value", body[:len(body)-10]},
		{"truncated time", body[:len(body)-1]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc, _ := devEnc.Marshal(tc.body)
			var got NonceWindow
			if err := got.UnmarshalCBOR(enc); err == nil {
				t.Fatalf("decoded %d nonces from a damaged window", len(got))
			}
		})
	}
}

// TestDeviceRecordOldCBOR reads a device record as the hub wrote it before
// the packed nonce window (commit 9c4e5f4: the window as an array of maps
// with RFC 3339 times; testdata made from fullDevice plus two nonces).
func TestDeviceRecordOldCBOR(t *testing.T) {
	h, err := os.ReadFile("testdata/device-cbor-9c4e5f4.hex")
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(strings.TrimSpace(string(h)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("value")) {
		t.Fatal("the fixture does not hold the array form")
	}
	t0 := time.Date(2026, 12, 3, 10, 11, 12, 123456789, time.UTC)
	want := fullDevice("default/d1")
	want.Nonces = append(want.Nonces, Nonce{Idx: 4, Value: bytes.Repeat([]byte{10}, 32), At: t0.Add(10 * time.Second)},
		Nonce{Idx: 5, Value: bytes.Repeat([]byte{11}, 32), At: t0.Add(20*time.Second + 7)})
	var got Device
	if err := decodeDevice(b, &got); err != nil {
		t.Fatal(err)
	}
	if g, w := jsonOf(t, &got), jsonOf(t, want); g != w {
		t.Fatalf("read back\n%s\nwant\n%s", g, w)
	}
	// Written again, it takes the packed form and still reads the same.
	nb, err := encodeDevice(&got)
	if err != nil {
		t.Fatal(err)
	}
	var again Device
	if err := decodeDevice(nb, &again); err != nil {
		t.Fatal(err)
	}
	if g, w := jsonOf(t, &again), jsonOf(t, want); g != w || bytes.Contains(nb, []byte("value")) {
		t.Fatalf("rewritten record reads\n%s\nwant\n%s", g, w)
	}
	var brief DeviceBrief
	if err := decodeDevice(b, &brief); err != nil || brief.ID != "d1" || brief.State != Untrusted {
		t.Fatalf("brief of the old record: %+v, %v", brief, err)
	}
}

// BenchmarkDeviceRecord encodes and decodes the record of a device with a
// full nonce window (benchDevice: the sizes of a real TPM's EK, AK and EK
// certificate), as the hub's Save and a cache miss do.
func BenchmarkDeviceRecord(b *testing.B) {
	d := benchDevice(1, 64, time.Now().UTC())
	enc, err := encodeDevice(d)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := encodeDevice(d); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(enc)), "record-B")
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			var got Device
			if err := decodeDevice(enc, &got); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestVarintLen checks the sizes MarshalCBOR allocates by.
func TestVarintLen(t *testing.T) {
	for _, x := range []int64{0, 1, -1, 63, 64, -64, -65, 1 << 20, -(1 << 40), 1<<63 - 1, -1 << 63} {
		if got, want := varintLen(x), len(binary.AppendVarint(nil, x)); got != want {
			t.Fatalf("varintLen(%d) = %d, want %d", x, got, want)
		}
		if got, want := uvarintLen(uint64(x)), len(binary.AppendUvarint(nil, uint64(x))); got != want {
			t.Fatalf("uvarintLen(%d) = %d, want %d", uint64(x), got, want)
		}
	}
}
