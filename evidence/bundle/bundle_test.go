package bundle

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"

	"github.com/ratatouille/rat/evidence/claims"
	"github.com/ratatouille/rat/evidence/protocol"
)

type fixture struct {
	header   *Header
	policy   *Policy
	records  []*protocol.Evidence
	verdict  *Verdict
	hubKey   *ecdsa.PrivateKey
	encoded  []byte
	endStart int
}

func newFixture(t testing.TB, signed bool, n int) *fixture {
	t.Helper()
	hub, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := cose.NewSigner(cose.AlgorithmES256, hub)
	if err != nil {
		t.Fatal(err)
	}
	ek := bytes.Repeat([]byte{0xe1}, 300)
	ak := bytes.Repeat([]byte{0xa1}, 90)
	tok, err := NewToken(claims.UEID(ek), "hub-1", "dev-1", time.Unix(1_800_000_000, 0))
	if err != nil {
		t.Fatal(err)
	}
	tok.SpanFrom, tok.SpanTo = 1_799_990_000, 1_800_000_000
	binding, err := SignBinding(signer, &Binding{AKPublic: ak, EKPublic: ek, Method: BindingMethod, Time: 1_799_000_000, Hub: "hub-1", Device: "dev-1"})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{
		header: &Header{Token: tok, EKPublic: ek, EKCerts: [][]byte{{0x30, 1}, {0x30, 2}}, AKPublic: ak, Binding: binding,
			HubKey: mustSPKI(t, hub), TrustedRoot: []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`)},
		policy:  &Policy{Name: "Baseline::lab", Since: 1_799_990_000, FromSeq: 1, Document: []byte(`{"meta":{"version":1}}`), SigstoreBundle: []byte(`{"mediaType":"x"}`)},
		verdict: &Verdict{Value: []byte{0xa0}},
		hubKey:  hub,
	}
	for i := 1; i <= n; i++ {
		r := &protocol.Evidence{Seq: uint64(i), IMAStart: uint64(i - 1), IMA: bytes.Repeat([]byte{byte(i)}, 64), Time: int64(1_799_990_000 + 10*i)}
		if i%3 != 0 { // every third record is an IMA-only chunk
			r.Claims = []byte{0xa0}
			r.Attest = []byte("attest")
			r.Signature = []byte("sig")
			r.PCRs = map[uint16]map[int][]byte{0x0b: {10: make([]byte, 32)}}
		}
		f.records = append(f.records, r)
	}
	var buf bytes.Buffer
	var opts []EncodeOption
	if signed {
		opts = append(opts, WithSigner(signer))
	}
	enc, err := NewEncoder(&buf, f.header, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.WritePolicy(f.policy); err != nil {
		t.Fatal(err)
	}
	for _, r := range f.records {
		if err := enc.WriteRecord(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.WriteVerdict(f.verdict); err != nil {
		t.Fatal(err)
	}
	f.endStart = buf.Len()
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	f.encoded = buf.Bytes()
	return f
}

func decodeAll(b []byte) (*Decoder, []any, error) {
	d, err := NewDecoder(bytes.NewReader(b))
	if err != nil {
		return nil, nil, err
	}
	var items []any
	for {
		it, err := d.Next()
		if errors.Is(err, io.EOF) {
			return d, items, nil
		}
		if err != nil {
			return d, items, err
		}
		items = append(items, it)
	}
}

func TestRoundTrip(t *testing.T) {
	f := newFixture(t, true, 7)
	d, items, err := decodeAll(f.encoded)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d.Header(), f.header) {
		t.Fatalf("header differs:\n got %+v\nwant %+v", d.Header(), f.header)
	}
	if len(items) != 1+len(f.records)+1 {
		t.Fatalf("%d items, want %d", len(items), len(f.records)+2)
	}
	if !reflect.DeepEqual(items[0], f.policy) {
		t.Fatalf("policy differs: %+v", items[0])
	}
	for i, r := range f.records {
		r.V = protocol.Version
		if !reflect.DeepEqual(items[1+i], r) {
			t.Fatalf("record %d differs: %+v want %+v", i, items[1+i], r)
		}
	}
	if v := items[len(items)-1].(*Verdict); v.MediaType != MediaVerdict || !bytes.Equal(v.Value, f.verdict.Value) {
		t.Fatalf("verdict differs: %+v", v)
	}
	end := d.End()
	if end.Summary.Records != 7 || end.Summary.Quotes != 5 || end.Summary.Policies != 1 || end.Summary.Verdicts != 1 {
		t.Fatalf("summary %+v", end.Summary)
	}
	if err := VerifyEnd(end, &f.hubKey.PublicKey); err != nil {
		t.Fatalf("end signature: %v", err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err := VerifyEnd(end, &other.PublicKey); err == nil {
		t.Fatal("end signature verified under another key")
	}
	b, err := VerifyBinding(d.Header().Binding, &f.hubKey.PublicKey)
	if err != nil || b.Method != BindingMethod || !bytes.Equal(b.AKPublic, f.header.AKPublic) {
		t.Fatalf("binding: %+v, %v", b, err)
	}
	// A binding signature must not pass as an end signature or vice versa.
	if err := VerifyEnd(&End{Summary: end.Summary, SummaryBytes: end.SummaryBytes, Signature: d.Header().Binding}, &f.hubKey.PublicKey); err == nil {
		t.Fatal("binding signature accepted as a bundle signature")
	}
	if _, err := VerifyBinding(end.Signature, &f.hubKey.PublicKey); err == nil {
		t.Fatal("bundle signature accepted as a binding")
	}
}

// RFC 8392 NumericDate is a bare integer: the EAT must carry no tag 1.
func TestTokenTimesUntagged(t *testing.T) {
	f := newFixture(t, false, 1)
	b, err := encMode.Marshal(&f.header.Token)
	if err != nil {
		t.Fatal(err)
	}
	var m map[int]cbor.RawMessage
	if err := cbor.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []int{6, -70101, -70102} {
		if m[k][0]>>5 == 6 {
			t.Fatalf("claim %d is tagged: %x", k, m[k])
		}
		var v int64
		if err := cbor.Unmarshal(m[k], &v); err != nil {
			t.Fatalf("claim %d is not an integer: %v", k, err)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	f := newFixture(t, false, 4)
	good := f.encoded
	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 0x01; return b }
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"header only", good[:bytes.Index(good, f.policy.Document)-40]},
		{"truncated before end", good[:f.endStart]},
		{"truncated inside end", good[:len(good)-3]},
		{"trailing byte", append(bytes.Clone(good), 0x00)},
		{"second bundle appended", append(bytes.Clone(good), good...)},
		{"record byte changed", flip(bytes.Index(good, []byte("attest")))},
		{"policy byte changed", flip(bytes.Index(good, f.policy.Document) + 3)},
		{"indefinite length", append([]byte{0x9f}, good...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := decodeAll(tc.in); !errors.Is(err, ErrFormat) {
				t.Fatalf("err = %v, want ErrFormat", err)
			}
		})
	}
}

// A forged length must fail at the bound, not allocate it.
func TestElementBound(t *testing.T) {
	// A byte string claiming 2^62 bytes.
	in := []byte{0x5b, 0x40, 0, 0, 0, 0, 0, 0, 0}
	if _, err := NewDecoder(bytes.NewReader(in)); !errors.Is(err, ErrFormat) {
		t.Fatalf("err = %v", err)
	}
	// An array claiming 2^32 members.
	in = []byte{0x9a, 0xff, 0xff, 0xff, 0xff}
	if _, err := NewDecoder(bytes.NewReader(in)); !errors.Is(err, ErrFormat) {
		t.Fatalf("err = %v", err)
	}
}

func mustSPKI(t testing.TB, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
