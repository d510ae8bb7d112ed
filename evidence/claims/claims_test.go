package claims

import (
	"bytes"
	"strings"
	"testing"
)

func sample() Claims {
	return Claims{
		Nonce:    bytes.Repeat([]byte{7}, 32),
		UEID:     UEID([]byte("ek public area")),
		BootID:   "2f6c1f9e-boot",
		Release:  "1.2.3",
		Seq:      5,
		Prev:     QuoteDigest([]byte("attest"), []byte("sig")),
		IMACount: 42,
	}
}

func TestRoundTrip(t *testing.T) {
	c := sample()
	enc, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Unmarshal(enc)
	if err != nil {
		t.Fatal(err)
	}
	if got.Seq != c.Seq || !bytes.Equal(got.Prev, c.Prev) || got.BootID != c.BootID || got.IMACount != c.IMACount {
		t.Fatalf("round trip changed claims: %+v", got)
	}
	// Every field is bound: changing any one changes the qualifying data.
	base := QualifyingData(enc)
	muts := map[string]func(*Claims){
		"nonce":   func(c *Claims) { c.Nonce = bytes.Repeat([]byte{8}, 32) },
		"seq":     func(c *Claims) { c.Seq++ },
		"prev":    func(c *Claims) { c.Prev = QuoteDigest(nil, nil) },
		"boot":    func(c *Claims) { c.BootID = "other" },
		"release": func(c *Claims) { c.Release = "1.2.4" },
		"count":   func(c *Claims) { c.IMACount++ },
		"self":    func(c *Claims) { c.SelfIssued = true },
		"ueid":    func(c *Claims) { c.UEID = UEID([]byte("other ek")) },
	}
	for name, m := range muts {
		d := sample()
		m(&d)
		e, err := d.Marshal()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if bytes.Equal(QualifyingData(e), base) {
			t.Errorf("%s: qualifying data did not change", name)
		}
	}
}

func TestUnmarshalRefuses(t *testing.T) {
	good, _ := func() ([]byte, error) { c := sample(); return c.Marshal() }()
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "decode"},
		{"truncated", good[:len(good)-3], "decode"},
		{"trailing", append(append([]byte(nil), good...), 0), "decode"},
		{"not a map", []byte{0x01}, "decode"},
		{"short nonce", mustEnc(t, func(c *Claims) { c.Nonce = []byte{1} }), "nonce"},
		{"seq zero", mustEnc(t, func(c *Claims) { c.Seq = 0 }), "seq"},
		{"huge", make([]byte, MaxSize+1), "exceeds"},
		// the same map with a non-minimal integer encoding of seq (0x1b + 8 bytes)
		{"non-canonical", nonCanonical(t), "deterministic"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Unmarshal(tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want containing %q", err, tc.want)
			}
		})
	}
}

// mustEnc encodes claims that check() would refuse, bypassing Marshal.
func mustEnc(t *testing.T, m func(*Claims)) []byte {
	c := sample()
	m(&c)
	b, err := encMode.Marshal(&c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func nonCanonical(t *testing.T) []byte {
	c := sample()
	enc, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// seq=5 is encoded as key 0x3a 0x00 0x01 0x11 0x70 then value 0x05.
	key := []byte{0x3a, 0x00, 0x01, 0x11, 0x70, 0x05}
	i := bytes.Index(enc, key)
	if i < 0 {
		t.Fatalf("seq not found in %x", enc)
	}
	out := append([]byte(nil), enc[:i+5]...)
	out = append(out, 0x18, 0x05) // 5 as a one-byte uint: valid CBOR, not minimal
	return append(out, enc[i+6:]...)
}

func TestSelfNonce(t *testing.T) {
	a := SelfNonce(nil, 1)
	if bytes.Equal(a, SelfNonce(nil, 2)) || bytes.Equal(a, SelfNonce([]byte{1}, 1)) {
		t.Fatal("self nonce must depend on prev and seq")
	}
	if len(a) != 32 {
		t.Fatal(len(a))
	}
}

func FuzzUnmarshal(f *testing.F) {
	c := sample()
	enc, _ := c.Marshal()
	f.Add(enc)
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := Unmarshal(data)
		if err != nil {
			return
		}
		again, err := got.Marshal()
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted input does not re-encode identically: %v", err)
		}
	})
}
