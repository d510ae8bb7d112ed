package wire

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/veraison/cmw"
)

// cmwMonad and cmwCollection build the same items with veraison/cmw, the
// reference the bundle decoder uses.
func cmwMonad(t *testing.T, mt string, v []byte) *cmw.CMW {
	t.Helper()
	c, err := cmw.NewMonad(mt, v)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func cmwBytes(t *testing.T, c *cmw.CMW) []byte {
	t.Helper()
	b, err := c.MarshalCBOR()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMonadMatchesCMW(t *testing.T) {
	for _, tc := range []struct {
		name, mt string
		v        []byte
	}{
		{"record", MediaRecord, []byte{0xa1, 0x01, 0x02}},
		{"parameters", MediaCOSESign1, []byte{0x84}},
		{"long value", MediaCert, bytes.Repeat([]byte{0x30}, 70000)},
		{"one byte", MediaVerdict, []byte{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := monad(tc.mt, tc.v)
			if err != nil {
				t.Fatal(err)
			}
			if want := cmwBytes(t, cmwMonad(t, tc.mt, tc.v)); !bytes.Equal(got, want) {
				t.Fatalf("wire %x\ncmw  %x", got, want)
			}
		})
	}
}

func TestMonadRefusesWhatCMWRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, mt string
		v        []byte
	}{
		{"empty value", MediaRecord, []byte{}},
		{"bad media type", "not a media type;;", []byte{1}},
		{"empty media type", "", []byte{1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := monad(tc.mt, tc.v); err == nil {
				t.Fatal("accepted")
			}
			if _, err := cmw.NewMonad(tc.mt, tc.v); err == nil {
				t.Fatal("cmw accepts it: the test case is wrong")
			}
		})
	}
}

// A whole header, every optional item and an EK chain long enough that
// key order matters ("10" sorts before "2" bytewise but after it by
// length): the bytes equal veraison/cmw's.
func TestHeaderMatchesCMW(t *testing.T) {
	tok, err := NewToken(append([]byte{1}, bytes.Repeat([]byte{7}, 32)...), "hub-1", "dev-1", time.Unix(1_800_000_000, 0))
	if err != nil {
		t.Fatal(err)
	}
	var certs [][]byte
	for i := range 12 {
		certs = append(certs, []byte{0x30, byte(i)})
	}
	full := &Header{Token: tok, EKPublic: []byte{1, 2}, EKCerts: certs, IAKCert: []byte{3}, IDevIDCert: []byte{4},
		AKPublic: []byte{5}, Binding: []byte{6}, HubKey: []byte{7}, TrustedRoot: []byte(`{}`)}
	minimal := &Header{Token: tok, EKPublic: []byte{1, 2}, AKPublic: []byte{5}}
	for _, tc := range []struct {
		name string
		h    *Header
	}{{"full", full}, {"minimal", minimal}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := headerCMW(tc.h)
			if err != nil {
				t.Fatal(err)
			}
			tb, err := encMode.Marshal(&tc.h.Token)
			if err != nil {
				t.Fatal(err)
			}
			c, err := cmw.NewCollection(TypeBundle)
			if err != nil {
				t.Fatal(err)
			}
			add := func(c *cmw.CMW, key, mt string, v []byte) {
				if v == nil {
					return
				}
				if err := c.AddCollectionItem(key, cmwMonad(t, mt, v)); err != nil {
					t.Fatal(err)
				}
			}
			add(c, "eat", MediaEAT, tb)
			add(c, "ek", MediaTPMPublic, tc.h.EKPublic)
			if len(tc.h.EKCerts) > 0 {
				chain, err := cmw.NewCollection(TypeBundle + "/ek-certs")
				if err != nil {
					t.Fatal(err)
				}
				for i, der := range tc.h.EKCerts {
					add(chain, strconv.Itoa(i), MediaCert, der)
				}
				if err := c.AddCollectionItem("ek-certs", chain); err != nil {
					t.Fatal(err)
				}
			}
			add(c, "iak-cert", MediaCert, tc.h.IAKCert)
			add(c, "idevid-cert", MediaCert, tc.h.IDevIDCert)
			add(c, "ak", MediaTPMPublic, tc.h.AKPublic)
			add(c, "ak-binding", MediaCOSESign1, tc.h.Binding)
			add(c, "hub-key", MediaSPKI, tc.h.HubKey)
			add(c, "trusted-root", MediaTrustedRoot, tc.h.TrustedRoot)
			if want := cmwBytes(t, c); !bytes.Equal(got, want) {
				t.Fatalf("wire %x\ncmw  %x", got, want)
			}
		})
	}
}

func TestEncoderRefuses(t *testing.T) {
	tok, err := NewToken(append([]byte{1}, bytes.Repeat([]byte{7}, 16)...), "device", "dev-1", time.Unix(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		h    *Header
		want string
	}{
		{"no EK", &Header{Token: tok, AKPublic: []byte{1}}, "EK and AK"},
		{"no AK", &Header{Token: tok, EKPublic: []byte{1}}, "EK and AK"},
		{"empty optional item", &Header{Token: tok, EKPublic: []byte{1}, AKPublic: []byte{1}, HubKey: []byte{}}, "empty value"},
		{"empty EK certificate", &Header{Token: tok, EKPublic: []byte{1}, AKPublic: []byte{1}, EKCerts: [][]byte{{}}}, "empty value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			_, err := NewEncoder(&buf, tc.h)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
			if buf.Len() != 0 {
				t.Fatalf("%d bytes written for a refused header", buf.Len())
			}
		})
	}
}
