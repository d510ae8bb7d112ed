package ima

import (
	"bytes"
	"crypto"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const testdata = "../../testdata/ima/"

func readLog(t testing.TB, name string) []Entry {
	t.Helper()
	f, err := os.Open(testdata + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	es, err := ParseASCII(f)
	if err != nil {
		t.Fatalf("ParseASCII(%s): %v", name, err)
	}
	return es
}

// The rebuilt template data must hash to the template hash the kernel
// logged: that is what makes sha256-bank replay from an ascii log honest.
func TestTemplateDataMatchesLoggedHash(t *testing.T) {
	for _, name := range []string{"ubuntu2404-kernel68-ima-ng-sha256.ascii", "rust-keylime-ima-ng-sha1.ascii", "keylime-tests-mixed-ima-ng-ima-buf.ascii"} {
		t.Run(name, func(t *testing.T) {
			es := readLog(t, name)
			if len(es) == 0 {
				t.Fatal("no entries")
			}
			for i, e := range es {
				if e.IsViolation() {
					continue
				}
				if got := sha1.Sum(e.TemplateData); !bytes.Equal(got[:], e.TemplateHash) {
					t.Fatalf("entry %d (%s %s): sha1(template data)=%x, logged %x", i, e.TemplateName, e.Path, got, e.TemplateHash)
				}
			}
		})
	}
}

// Keylime's replay of the Ubuntu 24.04 log (shared/testdata/README.md).
func TestReplayMatchesKeylime(t *testing.T) {
	es := readLog(t, "ubuntu2404-kernel68-ima-ng-sha256.ascii")
	if len(es) != 780 {
		t.Fatalf("entries = %d, want 780", len(es))
	}
	for _, tc := range []struct {
		bank         crypto.Hash
		prefix, tail string
	}{
		{crypto.SHA256, "0a1447c3", "85c8"},
		{crypto.SHA1, "f90a1289", "f7f1"},
	} {
		v, err := Replay(es, tc.bank, nil)
		if err != nil {
			t.Fatal(err)
		}
		h := hex.EncodeToString(v)
		if !strings.HasPrefix(h, tc.prefix) || !strings.HasSuffix(h, tc.tail) {
			t.Errorf("%v replay = %s, want %s…%s", tc.bank, h, tc.prefix, tc.tail)
		}
	}
}

func TestAdvanceEqualsReplay(t *testing.T) {
	es := readLog(t, "rust-keylime-ima-ng-sha1.ascii")
	want, err := Replay(es, crypto.SHA256, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := NewReplayer(crypto.SHA256, nil)
	for i := 0; i < len(es); i += 97 {
		end := min(i+97, len(es))
		if err := r.Advance(es[i:end]); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(r.Value(), want) || r.Count() != len(es) {
		t.Fatalf("Advance in deltas = %x (%d), Replay = %x", r.Value(), r.Count(), want)
	}
	n, err := MatchPrefix(es, crypto.SHA256, nil, want)
	if err != nil || n != len(es) {
		t.Fatalf("MatchPrefix = %d, %v; want %d", n, err, len(es))
	}
	mid, _ := Replay(es[:100], crypto.SHA256, nil)
	if n, _ := MatchPrefix(es, crypto.SHA256, nil, mid); n != 100 {
		t.Fatalf("MatchPrefix(mid) = %d, want 100", n)
	}
	if n, _ := MatchPrefix(es, crypto.SHA256, nil, make([]byte, 31)); n != -1 {
		t.Fatalf("MatchPrefix(garbage) = %d, want -1", n)
	}
}

func TestBinaryRoundTrip(t *testing.T) {
	es := readLog(t, "keylime-tests-mixed-ima-ng-ima-buf.ascii")
	bin := MarshalBinary(es)
	got, err := ParseBinary(bytes.NewReader(bin))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(es) {
		t.Fatalf("got %d entries, want %d", len(got), len(es))
	}
	for i := range es {
		a, b := es[i], got[i]
		if a.Path != b.Path || a.DigestAlg != b.DigestAlg || !bytes.Equal(a.Digest, b.Digest) || !bytes.Equal(a.Buf, b.Buf) || !bytes.Equal(a.TemplateData, b.TemplateData) {
			t.Fatalf("entry %d differs after binary round trip:\n%+v\n%+v", i, a, b)
		}
	}
}

func TestParseErrors(t *testing.T) {
	good := "10 " + strings.Repeat("ab", 20) + " ima-ng sha256:" + strings.Repeat("cd", 32) + " /usr/bin/x\n"
	for _, tc := range []struct{ name, in, want string }{
		{"short", "10 abcd\n", "line 1"},
		{"bad pcr", strings.Replace(good, "10", "x", 1), "pcr"},
		{"bad template hash", strings.Replace(good, "abab", "zz", 1), "template hash"},
		{"unknown template", strings.Replace(good, "ima-ng", "ima-zz", 1), "unknown template"},
		{"no alg prefix", strings.Replace(good, "sha256:", "", 1), "algorithm prefix"},
		{"second line", good + "10 00\n", "line 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseASCII(strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
	bin := MarshalBinary(readLog(t, "keylime-tests-mixed-ima-ng-ima-buf.ascii"))
	for _, cut := range []int{3, 24, 30, len(bin) - 1} {
		_, err := ParseBinary(bytes.NewReader(bin[:cut]))
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("binary log cut at %d: err = %v, want unexpected EOF", cut, err)
		}
	}
}

// evmctl (ima-evm-utils) is an independent replay of the binary log.
func TestEvmctlAgrees(t *testing.T) {
	if _, err := exec.LookPath("evmctl"); err != nil {
		if os.Getenv("RAT_REQUIRE_INTEGRATION") == "1" {
			t.Fatal("evmctl not installed and RAT_REQUIRE_INTEGRATION=1")
		}
		t.Skip("evmctl not installed")
	}
	es := readLog(t, "ubuntu2404-kernel68-ima-ng-sha256.ascii")
	dir := t.TempDir()
	logPath := filepath.Join(dir, "binary_runtime_measurements")
	if err := os.WriteFile(logPath, MarshalBinary(es), 0o600); err != nil {
		t.Fatal(err)
	}
	pcrFile := func(bank crypto.Hash, v10 []byte) string {
		var b strings.Builder
		for i := 0; i < 24; i++ {
			v := make([]byte, bank.Size())
			if i == 10 {
				v = v10
			}
			b.WriteString("PCR-" + twoDigits(i) + ": " + hex.EncodeToString(v) + "\n")
		}
		p := filepath.Join(dir, bank.String())
		if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	s256, _ := Replay(es, crypto.SHA256, nil)
	s1, _ := Replay(es, crypto.SHA1, nil)
	run := func(p256, p1 string) error {
		out, err := exec.Command("evmctl", "ima_measurement", "--pcrs", "sha256,"+p256, "--pcrs", "sha1,"+p1, logPath).CombinedOutput()
		if err != nil {
			return errors.New(string(out))
		}
		return nil
	}
	if err := run(pcrFile(crypto.SHA256, s256), pcrFile(crypto.SHA1, s1)); err != nil {
		t.Fatalf("evmctl rejects our replay: %v", err)
	}
	bad := append([]byte(nil), s256...)
	bad[0] ^= 1
	if err := run(pcrFile(crypto.SHA256, bad), pcrFile(crypto.SHA1, s1)); err == nil {
		t.Fatal("evmctl accepted a wrong PCR 10: the cross-check is not checking")
	}
}

func twoDigits(i int) string { return string([]byte{byte('0' + i/10), byte('0' + i%10)}) }

func TestParseSM3Log(t *testing.T) {
	es := readLog(t, "keylime-ima-log-sm3_256")
	if len(es) == 0 {
		t.Fatal("no entries")
	}
	for i, e := range es {
		if e.DigestAlg != "sm3_256" || len(e.TemplateHash) != 32 {
			t.Fatalf("entry %d: alg %q, template hash %d bytes", i, e.DigestAlg, len(e.TemplateHash))
		}
	}
	if _, err := Replay(es, crypto.SHA1, nil); err == nil {
		t.Fatal("sha1-bank replay of 32-byte template hashes must fail, not truncate")
	}
}

func TestCheckTemplateHashes(t *testing.T) {
	es := readLog(t, "ubuntu2404-kernel68-ima-ng-sha256.ascii")
	if ev := CheckTemplateHashes(es); len(ev) != 0 {
		t.Fatalf("real log: %d template hash failures, first %v", len(ev), ev[0])
	}
	// A digest changed after the kernel logged the entry.
	bad := append([]Entry(nil), es...)
	e := bad[5]
	e.Digest = append([]byte(nil), e.Digest...)
	e.Digest[0] ^= 1
	e.TemplateData = e.buildTemplateData()
	bad[5] = e
	ev := CheckTemplateHashes(bad)
	if len(ev) != 1 || !strings.Contains(ev[0].Context, "entry 6") || !strings.Contains(ev[0].Context, e.Path) {
		t.Fatalf("tampered entry: events %v", ev)
	}
}

// Replay in every bank (the SHA-256 fast path and the generic one) must
// equal the definition, PCR := H(PCR || measurement), with fresh hash
// states, over real entries, a violation and an entry for another PCR.
func TestReplayEqualsDefinition(t *testing.T) {
	es := readLog(t, "keylime-tests-mixed-ima-ng-ima-buf.ascii")
	viol := es[1]
	viol.TemplateHash = make([]byte, 20)
	other := es[2]
	other.PCR = 11
	es = append(es[:3:3], viol, other, es[3])
	for _, bank := range []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		want := make([]byte, bank.Size())
		for _, e := range es {
			if e.PCR != 10 {
				continue
			}
			var m []byte
			switch {
			case e.IsViolation():
				m = bytes.Repeat([]byte{0xff}, bank.Size())
			case bank == crypto.SHA1:
				m = e.TemplateHash
			default:
				h := bank.New()
				h.Write(e.TemplateData)
				m = h.Sum(nil)
			}
			h := bank.New()
			h.Write(want)
			h.Write(m)
			want = h.Sum(nil)
		}
		got, err := Replay(es, bank, nil)
		if err != nil {
			t.Fatalf("%v: %v", bank, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%v: Replay = %x, definition %x", bank, got, want)
		}
		r, _ := NewReplayer(bank, nil)
		for i := range es {
			if err := r.Advance(es[i : i+1]); err != nil {
				t.Fatalf("%v: Advance: %v", bank, err)
			}
		}
		if !bytes.Equal(r.Value(), want) || r.Count() != len(es) {
			t.Errorf("%v: Advance one by one = %x (%d entries), definition %x (%d)", bank, r.Value(), r.Count(), want, len(es))
		}
	}
}

// ParseBinary's errors name the entry, its offset and the field; callers
// (the hub's rejections) pass them on, so they are pinned exactly here.
func TestParseBinaryErrorsExact(t *testing.T) {
	good, err := NewNgEntry(10, "sha256", bytes.Repeat([]byte{0xcd}, 32), "/usr/bin/x")
	if err != nil {
		t.Fatal(err)
	}
	first := MarshalBinary([]Entry{good})
	off := len(first)
	entry := func(name string, data []byte) []byte {
		e := good
		e.TemplateName, e.TemplateData = name, data
		return append(append([]byte(nil), first...), MarshalBinary([]Entry{e})...)
	}
	field := func(b []byte) []byte {
		return append(binary.LittleEndian.AppendUint32(nil, uint32(len(b))), b...)
	}
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	dng := field(append([]byte("sha256:\x00"), good.Digest...))
	nng := field([]byte("/usr/bin/x\x00"))
	long := entry("ima-ng", nil)
	binary.LittleEndian.PutUint32(long[off+24:], 256)
	bigData := entry("ima-ng", nil)
	binary.LittleEndian.PutUint32(bigData[off+24+4+6:], 64<<10+1)
	for _, tc := range []struct {
		name string
		in   []byte
		n    int
		want string
	}{
		{"header cut", first[:10], 0, "ima: binary log entry 0 at offset 0: truncated header (10 bytes): unexpected EOF"},
		{"name length cut", first[:26], 0, "ima: binary log entry 0 at offset 0: template name: length: unexpected EOF"},
		{"name cut", first[:30], 0, "ima: binary log entry 0 at offset 0: template name: 6 bytes: unexpected EOF"},
		{"name too long", long, 1, fmt.Sprintf("ima: binary log entry 1 at offset %d: template name: length 256 exceeds 255", off)},
		{"data length cut", first[:36], 0, "ima: binary log entry 0 at offset 0: template data: length: unexpected EOF"},
		{"data cut", first[:len(first)-1], 0, fmt.Sprintf("ima: binary log entry 0 at offset 0: template data: %d bytes: unexpected EOF", len(good.TemplateData))},
		{"data too long", bigData, 1, fmt.Sprintf("ima: binary log entry 1 at offset %d: template data: length 65537 exceeds 65536", off)},
		{"field length cut", entry("ima-ng", cat(dng, []byte{1, 0})), 1, fmt.Sprintf("ima: binary log entry 1 at offset %d (ima-ng): field 1: truncated length", off)},
		{"field too long", entry("ima-sig", cat(dng, nng, []byte{9, 0, 0, 0, 1})), 1, fmt.Sprintf("ima: binary log entry 1 at offset %d (ima-sig): field 2: length 9 exceeds the 1 bytes left", off)},
		{"too few fields", entry("ima-buf", cat(dng, nng)), 1, fmt.Sprintf("ima: binary log entry 1 at offset %d (ima-buf): 2 fields, want 3", off)},
		{"no alg prefix", entry("ima-ng", cat(field([]byte("sha256")), nng)), 1, fmt.Sprintf("ima: binary log entry 1 at offset %d (ima-ng): d-ng field has no \"alg:\\0\" prefix", off)},
		{"legacy too short", entry("ima", make([]byte, 19)), 1, fmt.Sprintf("ima: binary log entry 1 at offset %d (ima): legacy ima data: 19 bytes, want at least 20", off)},
		{"custom template, bad fields", entry("my-tmpl", []byte{1, 2}), 1, fmt.Sprintf("ima: binary log entry 1 at offset %d (my-tmpl): field 0: truncated length", off)},
		{"custom template kept raw", entry("my-tmpl", cat(field([]byte("x")))), 2, ""},
		{"a fourth field is allowed", entry("ima-sig", cat(dng, nng, field(nil), field([]byte("z")))), 2, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			es, err := ParseBinary(bytes.NewReader(tc.in))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want || len(es) != tc.n {
				t.Fatalf("%d entries, err %q\nwant %d,       %q", len(es), got, tc.n, tc.want)
			}
		})
	}
	// The decoded fields of a well-formed entry, and the interned names.
	es, err := ParseBinary(bytes.NewReader(entry("ima-sig", cat(dng, nng, field([]byte{3, 2})))))
	if err != nil {
		t.Fatal(err)
	}
	e := es[1]
	if e.TemplateName != "ima-sig" || e.DigestAlg != "sha256" || !bytes.Equal(e.Digest, good.Digest) || e.Path != "/usr/bin/x" || !bytes.Equal(e.Signature, []byte{3, 2}) || !bytes.Equal(e.TemplateHash, good.TemplateHash) || e.PCR != 10 {
		t.Fatalf("decoded %+v", e)
	}
}
