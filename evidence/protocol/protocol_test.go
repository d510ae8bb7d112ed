package protocol

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestTopics(t *testing.T) {
	up := UpTopic("acme", "dev-1", KindEvidence)
	if up != "rat/v1/dt/acme/dev-1/evidence" {
		t.Fatal(up)
	}
	f, d, k, err := ParseUpTopic(up)
	if err != nil || f != "acme" || d != "dev-1" || k != KindEvidence {
		t.Fatalf("%s %s %s %v", f, d, k, err)
	}
	bad := []string{
		"rat/v1/cmd/acme/dev-1/ack",
		"rat/v2/dt/acme/dev-1/evidence",
		"rat/v1/dt/acme/dev-1",
		"rat/v1/dt/acme/dev-1/evidence/extra",
		"rat/v1/dt/acme/+/evidence",
		"rat/v1/dt/acme/#/evidence",
		"rat/v1/dt//dev-1/evidence",
		"rat/v1/dt/acme/.hidden/evidence",
	}
	for _, b := range bad {
		if _, _, _, err := ParseUpTopic(b); err == nil {
			t.Errorf("%q accepted", b)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	in := &Evidence{Seq: 3, Claims: []byte{1, 2}, Attest: []byte("a"), Signature: []byte("s"),
		PCRs: map[uint16]map[int][]byte{0x0b: {10: bytes.Repeat([]byte{1}, 32)}}, IMAStart: 7, IMA: []byte("ima"), Thinned: 2}
	b, err := Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out Evidence
	if err := Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out.Seq != 3 || out.IMAStart != 7 || !bytes.Equal(out.PCRs[0x0b][10], in.PCRs[0x0b][10]) || out.Thinned != 2 || !out.Quoted() {
		t.Fatalf("%+v", out)
	}
}

func TestUnmarshalRefuses(t *testing.T) {
	good, err := Marshal(&Ack{Seq: 1, Nonce: []byte("12345678")})
	if err != nil {
		t.Fatal(err)
	}
	wrongVersion := append([]byte(nil), good...)
	// key 0 is the first pair: 0x00 then the version 0x01
	if wrongVersion[1] != 0x00 || wrongVersion[2] != 0x01 {
		t.Fatalf("unexpected encoding %x", good)
	}
	wrongVersion[2] = 0x02
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"truncated", good[:len(good)-2], "decode"},
		{"wrong version", wrongVersion, "version 2"},
		{"unknown field", []byte{0xa2, 0x00, 0x01, 0x18, 0x63, 0x01}, "decode"},
		{"duplicate key", []byte{0xa2, 0x00, 0x01, 0x00, 0x01}, "decode"},
		{"tag", []byte{0xc1, 0x00}, "decode"},
		{"oversize", make([]byte, MaxMessage+1), "size bound"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var a Ack
			err := Unmarshal(tc.data, &a)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	var a Ack
	if err := Unmarshal(make([]byte, MaxMessage+1), &a); !errors.Is(err, ErrTooLarge) {
		t.Fatal(err)
	}
}

func TestMarshalBound(t *testing.T) {
	_, err := Marshal(&Evidence{Seq: 1, IMA: make([]byte, MaxMessage)})
	if err == nil {
		t.Fatal("oversize evidence encoded")
	}
}

func FuzzUnmarshalEvidence(f *testing.F) {
	b, _ := Marshal(&Evidence{Seq: 1, Claims: []byte{1}, IMA: []byte{1, 2, 3}, PCRs: map[uint16]map[int][]byte{11: {0: {0}}}})
	f.Add(b)
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, data []byte) {
		var e Evidence
		if err := Unmarshal(data, &e); err != nil {
			return
		}
		if _, err := Marshal(&e); err != nil && len(data) <= MaxMessage {
			t.Fatalf("accepted message does not re-encode: %v", err)
		}
	})
}
