package eventlog

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ratatouille/rat/evidence/failure"
)

var logs = []string{
	"fedora41-sha1-sha256.bin",
	"secureboot-on.bin",
	"ubuntu2404-sha256-sha384.bin",
	"keylime-mb_log.bin",
}

func readLog(t testing.TB, name string) (*Log, []byte) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	l, err := Parse(b)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return l, b
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Pinned values. They are what tpm2_eventlog prints for the same files,
// except PCR 0 of the Fedora log, which has a StartupLocality event
// (locality 3, Boot Guard): there tpm2-tools before 5.5 is wrong, and the
// value was checked with go-eventlog v0.0.2's Verify instead, as were all
// the others.
func TestReplayPinned(t *testing.T) {
	for _, tc := range []struct {
		log        string
		bank       uint16
		pcr        int
		want       string
		format     Format
		nEvents    int
		banks      int
		wantAbsent bool
	}{
		{log: "fedora41-sha1-sha256.bin", bank: AlgSHA256, pcr: 0, want: "0ee9a7feba8f4172f1a7451594aa5731665a4d353ac61814042ce107a00742f2"},
		{log: "fedora41-sha1-sha256.bin", bank: AlgSHA256, pcr: 7, want: "741fd028c51b4d2fbdcc7f28014cc758d17ccc1fe2ea7ca17b0e8009480a557c"},
		{log: "fedora41-sha1-sha256.bin", bank: AlgSHA1, pcr: 0, want: "78f3e576d5da8873860e557535d181f4a37e2963"},
		{log: "fedora41-sha1-sha256.bin", bank: AlgSHA1, pcr: 14, want: "ffaf5dfab351dc9b3b7a3cf748759e137f1601a8"},
		{log: "secureboot-on.bin", bank: AlgSHA256, pcr: 7, want: "2f96e1f1bf7f91b6f17e1bcb823e717e43782ff75481237711f2ed7bf8a8edb1"},
		{log: "secureboot-on.bin", bank: AlgSHA256, pcr: 9, want: "acd038dd8ec2f7e42a7c5c68e07ae6713962d8835412b1f5632c7e63da36ffc2"},
		{log: "ubuntu2404-sha256-sha384.bin", bank: AlgSHA384, pcr: 7, want: "c954c73e233dbcefe05a2a2126a9eadc8fd67377d159eaec09816736d3813a38c69017c2e1e71edc9c83c1237796783b"},
		{log: "ubuntu2404-sha256-sha384.bin", bank: AlgSHA256, pcr: 6, want: "63d508240a9542e283121862db7bf0756a89f8f74cf642d6a29285c82e14dc63"},
		{log: "keylime-mb_log.bin", bank: AlgSHA256, pcr: 4, want: "8a2eb1c3b1e3dec41f491ec82ae6a66306fa4dfd4b35589d7f19092b00aef5d8"},
		{log: "keylime-mb_log.bin", bank: AlgSHA256, pcr: 11, wantAbsent: true},
	} {
		t.Run(tc.log+"/"+AlgName(tc.bank)+"/"+strconv.Itoa(tc.pcr), func(t *testing.T) {
			l, _ := readLog(t, tc.log)
			got, err := l.Replay(tc.bank)
			if err != nil {
				t.Fatal(err)
			}
			v, ok := got[tc.pcr]
			if tc.wantAbsent {
				if ok {
					t.Fatalf("PCR %d present: %x", tc.pcr, v)
				}
				return
			}
			if hex.EncodeToString(v) != tc.want {
				t.Fatalf("PCR %d = %x, want %s", tc.pcr, v, tc.want)
			}
		})
	}
}

func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("RAT_REQUIRE_INTEGRATION") == "1" {
			t.Fatalf("%s not installed (RAT_REQUIRE_INTEGRATION=1)", name)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

// tpm2Eventlog runs tpm2_eventlog and returns its "pcrs:" section.
func tpm2Eventlog(t *testing.T, path string) map[uint16]map[int][]byte {
	t.Helper()
	out, err := exec.Command(requireTool(t, "tpm2_eventlog"), path).Output()
	if err != nil {
		t.Fatalf("tpm2_eventlog %s: %v", path, err)
	}
	res := map[uint16]map[int][]byte{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	in := false
	var bank uint16
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "pcrs:":
			in = true
		case !in:
		case strings.HasPrefix(line, "  ") && !strings.HasPrefix(line, "    "):
			alg, ok := AlgByName(strings.TrimSuffix(strings.TrimSpace(line), ":"))
			if !ok {
				t.Fatalf("tpm2_eventlog bank %q", line)
			}
			bank = alg
			res[bank] = map[int][]byte{}
		default:
			idx, val, ok := strings.Cut(line, ":")
			p, err := strconv.Atoi(strings.TrimSpace(idx))
			if !ok || err != nil {
				t.Fatalf("tpm2_eventlog line %q", line)
			}
			res[bank][p] = unhex(t, strings.TrimPrefix(strings.TrimSpace(val), "0x"))
		}
	}
	if len(res) == 0 {
		t.Fatalf("tpm2_eventlog printed no pcrs for %s", path)
	}
	return res
}

// tpm2ToolsBefore55 reports whether the installed tpm2_eventlog extends
// EV_NO_ACTION events and ignores StartupLocality (tpm2-tools issues 3224
// and 3146, fixed in 5.5 and 5.6; Debian bookworm ships 5.4).
func tpm2ToolsBefore55(t *testing.T) bool {
	out, err := exec.Command(requireTool(t, "tpm2_eventlog"), "--version").Output()
	if err != nil {
		t.Fatalf("tpm2_eventlog --version: %v", err)
	}
	_, v, ok := strings.Cut(string(out), `version="`)
	v, _, _ = strings.Cut(v, `"`)
	major, minor, _ := strings.Cut(v, ".")
	ma, err1 := strconv.Atoi(major)
	mi, err2 := strconv.Atoi(strings.SplitN(minor, ".", 2)[0])
	if !ok || err1 != nil || err2 != nil {
		t.Fatalf("tpm2_eventlog version %q", out)
	}
	return ma < 5 || ma == 5 && mi < 5
}

// replayAsTpm2Tools54 replays one PCR the way tpm2-tools before 5.5 does:
// EV_NO_ACTION digests (zeros) extended, PCR 0 starting at zero. It lets
// the cross-check still cover every digest of PCR 0 on such a system.
func replayAsTpm2Tools54(t *testing.T, l *Log, bank uint16, pcr int) []byte {
	h, _ := hashOf(bank)
	v := make([]byte, h.Size())
	for _, e := range l.Events {
		if e.PCR != pcr {
			continue
		}
		d, _ := e.Digest(bank)
		x := h.New()
		x.Write(v)
		x.Write(d)
		v = x.Sum(nil)
	}
	return v
}

// TestReplayMatchesTpm2Eventlog cross-checks every bank of every log with
// an independent implementation (tpm2-tools). tpm2_eventlog prints only
// PCRs that have events; ours also has the untouched ones of 0-9 at zero.
func TestReplayMatchesTpm2Eventlog(t *testing.T) {
	old := tpm2ToolsBefore55(t)
	for _, name := range logs {
		t.Run(name, func(t *testing.T) {
			l, _ := readLog(t, name)
			want := tpm2Eventlog(t, filepath.Join("testdata", name))
			if len(want) != len(l.Banks) {
				t.Fatalf("tpm2_eventlog has %d banks, we have %d", len(want), len(l.Banks))
			}
			for bank, pcrs := range want {
				got, err := l.Replay(bank)
				if err != nil {
					t.Fatal(err)
				}
				if old {
					for p := range pcrs {
						for _, e := range l.Events {
							if e.PCR == p && e.Type == EvNoAction {
								// Compare this PCR as old tpm2-tools computes it.
								got[p] = replayAsTpm2Tools54(t, l, bank, p)
								break
							}
						}
					}
				}
				for p, v := range got {
					w, ok := pcrs[p]
					if !ok {
						w = make([]byte, len(v)) // untouched PCR
					}
					if !bytes.Equal(v, w) {
						t.Errorf("%s PCR %d = %x, tpm2_eventlog %x", AlgName(bank), p, v, w)
					}
				}
				for p := range pcrs {
					if _, ok := got[p]; !ok {
						t.Errorf("%s PCR %d missing from our replay", AlgName(bank), p)
					}
				}
			}
		})
	}
}

// legacyOf rewrites a crypto-agile log in the SHA-1 legacy form
// (TCG_PCClientPCREvent), dropping EV_NO_ACTION events.
func legacyOf(t *testing.T, l *Log) []byte {
	t.Helper()
	var b []byte
	for _, e := range l.Events {
		if e.Type == EvNoAction {
			continue
		}
		d, ok := e.Digest(AlgSHA1)
		if !ok {
			t.Fatal("no sha1 digest")
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(e.PCR))
		b = binary.LittleEndian.AppendUint32(b, uint32(e.Type))
		b = append(b, d...)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(e.Data)))
		b = append(b, e.Data...)
	}
	return b
}

func TestLegacySHA1(t *testing.T) {
	agile, _ := readLog(t, "fedora41-sha1-sha256.bin")
	raw := legacyOf(t, agile)
	l, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if l.Format != SHA1 || l.Header != nil || len(l.Banks) != 1 {
		t.Fatalf("format %v header %v banks %v", l.Format, l.Header, l.Banks)
	}
	if !bytes.Equal(l.Marshal(), raw) {
		t.Fatal("Marshal does not give back the legacy bytes")
	}
	got, err := l.Replay(AlgSHA1)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := agile.Replay(AlgSHA1)
	for p := 1; p <= 14; p++ { // PCR 0 differs: the legacy form has no StartupLocality
		if !bytes.Equal(got[p], want[p]) {
			t.Errorf("PCR %d: legacy %x, crypto-agile %x", p, got[p], want[p])
		}
	}
	if _, err := l.Replay(AlgSHA256); !errors.Is(err, ErrBank) {
		t.Fatalf("sha256 replay of a SHA-1 log: %v, want ErrBank", err)
	}
	st, err := l.SecureBoot()
	if err != nil || !st.Measured || st.Enabled {
		t.Fatalf("SecureBoot of legacy log: %+v, %v", st, err)
	}
	if _, err := exec.LookPath("tpm2_eventlog"); err == nil || os.Getenv("RAT_REQUIRE_INTEGRATION") == "1" {
		p := filepath.Join(t.TempDir(), "legacy.bin")
		if err := os.WriteFile(p, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		for pcr, v := range tpm2Eventlog(t, p)[AlgSHA1] {
			if !bytes.Equal(got[pcr], v) {
				t.Errorf("legacy PCR %d = %x, tpm2_eventlog %x", pcr, got[pcr], v)
			}
		}
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	for _, name := range logs {
		l, raw := readLog(t, name)
		if !bytes.Equal(l.Marshal(), raw) {
			t.Errorf("%s: Marshal(Parse(x)) != x", name)
		}
	}
}

func TestSecureBoot(t *testing.T) {
	for _, tc := range []struct {
		log         string
		enabled     bool
		pk          string // substring of the PK certificate subject
		db, dbx     int    // signature counts
		authorities []string
	}{
		{"fedora41-sha1-sha256.bin", false, "Lenovo Ltd. PK CA 2012", 4, 460, []string{"SbatLevel"}},
		{"secureboot-on.bin", true, "Red Hat Secure Boot (PK/KEK key 1)", 4, 371, []string{"db", "SbatLevel", "vendor_db"}},
		{"ubuntu2404-sha256-sha384.bin", false, "HPE UEFI Secure Boot 2016 PK Key", 5, 598, []string{"SbatLevel"}},
		{"keylime-mb_log.bin", true, "Red Hat Secure Boot", 2, 1, []string{"db", "Shim"}},
	} {
		t.Run(tc.log, func(t *testing.T) {
			l, _ := readLog(t, tc.log)
			st, err := l.SecureBoot()
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Complete(); err != nil {
				t.Fatal(err)
			}
			if st.Enabled != tc.enabled {
				t.Fatalf("Enabled = %v, want %v", st.Enabled, tc.enabled)
			}
			var names []string
			for _, v := range st.Variables {
				names = append(names, v.Name)
			}
			if strings.Join(names, ",") != "SecureBoot,PK,KEK,db,dbx" {
				t.Fatalf("PCR 7 variables %v", names)
			}
			pk, _ := st.Variable("PK")
			if len(pk.Signatures) != 1 || !strings.Contains(pk.Signatures[0].Subject(), tc.pk) {
				t.Fatalf("PK %v", pk.Signatures)
			}
			db, _ := st.Variable("db")
			dbx, _ := st.Variable("dbx")
			if len(db.Signatures) != tc.db || len(dbx.Signatures) != tc.dbx {
				t.Fatalf("db %d dbx %d signatures, want %d %d", len(db.Signatures), len(dbx.Signatures), tc.db, tc.dbx)
			}
			var auth []string
			for _, a := range st.Authorities {
				auth = append(auth, a.Name)
			}
			if strings.Join(auth, ",") != strings.Join(tc.authorities, ",") {
				t.Fatalf("authorities %v, want %v", auth, tc.authorities)
			}
		})
	}
}

// quotedOf is what a TPM that really booted this log would quote.
func quotedOf(t *testing.T, l *Log, bank uint16) map[int][]byte {
	t.Helper()
	q, err := l.Replay(bank)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func critical(ev []failure.Event) []failure.Event {
	var out []failure.Event
	for _, e := range ev {
		if e.Severity == failure.Critical {
			out = append(out, e)
		}
	}
	return out
}

// eventWith returns the first event matching pcr and type.
func eventWith(t *testing.T, l *Log, pcr int, typ EventType) *Event {
	t.Helper()
	for i := range l.Events {
		if l.Events[i].PCR == pcr && l.Events[i].Type == typ {
			return &l.Events[i]
		}
	}
	t.Fatalf("no %s in PCR %d", typ, pcr)
	return nil
}

func TestVerify(t *testing.T) {
	base, raw := readLog(t, "secureboot-on.bin")
	good := quotedOf(t, base, AlgSHA256)
	flip := func(off int) *Log {
		b := bytes.Clone(raw)
		b[off] ^= 0x01
		l, err := Parse(b)
		if err != nil {
			t.Fatalf("flip at %d: %v", off, err)
		}
		return l
	}
	sb := eventWith(t, base, 7, EvEFIVariableDriverConfig)
	sep := eventWith(t, base, 7, EvSeparator)
	app := eventWith(t, base, 4, EvEFIBootServicesApp)
	without := func(p int) map[int][]byte {
		q := map[int][]byte{}
		for k, v := range good {
			if k != p {
				q[k] = v
			}
		}
		return q
	}
	other := map[int][]byte{}
	for k, v := range good {
		other[k] = v
	}
	other[5] = make([]byte, 32)
	for _, tc := range []struct {
		name   string
		log    *Log
		bank   uint16
		quoted map[int][]byte
		want   []string // ids, in order
	}{
		{"untouched", base, AlgSHA256, good, nil},
		{"PCR 4 digest byte", flip(app.Offset + 12 + 2), AlgSHA256, good, []string{failure.MeasuredBootInvalidPCR}},
		{"SecureBoot value byte", flip(sb.Offset + len(sb.Marshal()) - 1), AlgSHA256, good, []string{failure.MeasuredBootEventData}},
		{"separator data byte", flip(sep.Offset + len(sep.Marshal()) - 1), AlgSHA256, good, []string{failure.MeasuredBootEventData}},
		{"quote differs in PCR 5", base, AlgSHA256, other, []string{failure.MeasuredBootInvalidPCR}},
		{"bank not in log", base, AlgSHA1, good, []string{failure.MeasuredBootInvalidLog}},
		{"PCR 7 not quoted", base, AlgSHA256, without(7), []string{failure.MeasuredBootPCRNotQuoted}},
		{"PCR 14 not quoted", base, AlgSHA256, without(14), []string{failure.MeasuredBootPCRNotQuoted}},
		{"nil log", nil, AlgSHA256, good, []string{failure.MeasuredBootInvalidLog}},
		{"nothing quoted", base, AlgSHA256, nil, []string{failure.MeasuredBootInvalidLog}},
		{"only PCR 10 quoted", base, AlgSHA256, map[int][]byte{10: make([]byte, 32)}, []string{failure.MeasuredBootInvalidLog}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := Verify(tc.log, tc.bank, tc.quoted)
			var ids []string
			for _, e := range ev {
				ids = append(ids, e.ID)
			}
			if strings.Join(ids, " ") != strings.Join(tc.want, " ") {
				t.Fatalf("events %v, want %v", ev, tc.want)
			}
		})
	}
	// A PCR 7 not in the quote is a warning (its Secure Boot state is not
	// backed); PCR 14 (shim's MokList) only informs.
	if ev := Verify(base, AlgSHA256, without(7)); ev[0].Severity != failure.Warning || ev[0].Fields["pcr"] != "7" {
		t.Fatalf("PCR 7 not quoted: %+v", ev)
	}
	if ev := Verify(base, AlgSHA256, without(14)); ev[0].Severity != failure.Info {
		t.Fatalf("PCR 14 not quoted: %+v", ev)
	}
}

// Marshal of one event, in the log's format, to find field offsets.
func (e *Event) Marshal() []byte {
	l := &Log{Format: CryptoAgile, Events: []Event{*e}}
	return l.Marshal()
}

// TestOneByteTamper flips each byte of a real log, one at a time, and
// requires detection (a parse error or a critical Verify event against the
// quote of the untouched boot) wherever the PC Client profile makes the
// byte matter: PCR indexes, sizes and counts, the verified bank's digests,
// data of events whose digest is their data's hash, and the StartupLocality
// byte. Other bytes (data of events whose digest covers something else,
// such as a PE image; the other bank's digests) are not covered by the
// TPM, and the test only requires that nothing panics there.
func TestOneByteTamper(t *testing.T) {
	base, raw := readLog(t, "fedora41-sha1-sha256.bin")
	const bank = AlgSHA256
	quoted := quotedOf(t, base, bank)
	must := make([]bool, len(raw))
	for _, e := range base.Events {
		enc := e.Marshal()
		end := e.Offset + len(enc)
		for i := e.Offset; i < e.Offset+4; i++ { // pcrIndex
			must[i] = e.Type != EvNoAction
		}
		off := e.Offset + 8
		for i := off; i < off+4; i++ { // digest count
			must[i] = true
		}
		off += 4
		for _, d := range e.Digests {
			for i := off; i < off+2; i++ { // algorithm id
				must[i] = true
			}
			off += 2
			if d.Alg == bank && e.Type != EvNoAction {
				for i := off; i < off+len(d.Value); i++ {
					must[i] = true
				}
			}
			off += len(d.Value)
		}
		for i := off; i < off+4; i++ { // event size
			must[i] = true
		}
		off += 4
		if dataBound(e.Type) {
			// One mechanism (the data's hash) guards every byte of the
			// data: the first and last 16 bytes and every 31st between
			// stand for all of them and keep the test fast.
			for i := off; i < end; i++ {
				must[i] = i-off < 16 || end-i <= 16 || (i-off)%31 == 0
			}
		}
		if e.Type == EvNoAction && bytes.HasPrefix(e.Data, startupLocality) {
			must[end-1] = true
		}
	}
	// Every byte that must be caught is flipped; of the others, every
	// eleventh (they only have to not panic, which FuzzParse covers too).
	var detected, required, missed, flipped int
	b := bytes.Clone(raw)
	for i := 0; i < len(raw); i++ {
		if !must[i] && i%11 != 0 {
			continue
		}
		flipped++
		b[i] ^= 0x01
		caught := true
		if l, err := Parse(b); err == nil {
			caught = len(critical(Verify(l, bank, quoted))) > 0
		}
		b[i] ^= 0x01
		if caught {
			detected++
		}
		if must[i] {
			required++
			if !caught {
				missed++
				if missed < 10 {
					t.Errorf("flip at offset %d not detected", i)
				}
			}
		}
	}
	if missed > 0 {
		t.Fatalf("%d of %d required flips not detected", missed, required)
	}
	t.Logf("%d bytes flipped, %d detected, %d required and all detected", flipped, detected, required)
}

func TestParseRefuses(t *testing.T) {
	_, raw := readLog(t, "secureboot-on.bin")
	hdrLen := 32 + int(binary.LittleEndian.Uint32(raw[28:]))
	header := raw[:hdrLen]
	agile := func(parts ...[]byte) []byte {
		b := bytes.Clone(header)
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	le32 := func(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
	le16 := func(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
	specID := func(mut func([]byte) []byte) []byte {
		d := mut(bytes.Clone(header[32:]))
		b := append(le32(0), le32(uint32(EvNoAction))...)
		b = append(b, make([]byte, 20)...)
		b = append(b, le32(uint32(len(d)))...)
		return append(b, d...)
	}
	sha256 := make([]byte, 32)
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"too big", make([]byte, MaxLogSize+1), "exceeds"},
		{"truncated header", raw[:20], "want 20 bytes"},
		{"huge legacy event size", append(append(make([]byte, 28), le32(0xffffffff)...), 1, 2), "exceeds"},
		{"huge agile event size", agile(le32(0), le32(1), le32(1), le16(AlgSHA256), sha256, le32(0xfffffff0)), "exceeds"},
		{"more digests than banks", agile(le32(0), le32(1), le32(1000000), le16(AlgSHA256)), "digests, the header declares"},
		{"undeclared algorithm", agile(le32(0), le32(1), le32(1), le16(AlgSHA1), make([]byte, 20), le32(0)), "not declared"},
		{"measured event without digest", agile(le32(0), le32(1), le32(0), le32(0)), "0 digests for 1 banks"},
		{"PCR index out of range", agile(le32(24), le32(1), le32(1), le16(AlgSHA256), sha256, le32(0)), "out of range"},
		{"PCR index -1", agile(le32(0xffffffff), le32(1), le32(1), le16(AlgSHA256), sha256, le32(0)), "out of range"},
		{"truncated digest", agile(le32(0), le32(1), le32(1), le16(AlgSHA256), sha256[:5]), "want 32 bytes"},
		{"trailing byte", agile([]byte{0}), "want 4 bytes"},
		{"spec id: many algorithms", specID(func(d []byte) []byte { binary.LittleEndian.PutUint32(d[24:], 1<<31); return d }), "algorithms"},
		{"spec id: sha256 of 20 bytes", specID(func(d []byte) []byte { binary.LittleEndian.PutUint16(d[30:], 20); return d }), "want 32"},
		{"spec id: major 1", specID(func(d []byte) []byte { d[21] = 1; return d }), "specVersionMajor"},
		{"spec id: vendor info overrun", specID(func(d []byte) []byte { d[len(d)-1] = 200; return d }), "vendorInfo"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}

func TestParseVariableRefuses(t *testing.T) {
	hdr := func(nameLen, dataLen uint64, rest int) []byte {
		b := make([]byte, 16)
		b = binary.LittleEndian.AppendUint64(b, nameLen)
		b = binary.LittleEndian.AppendUint64(b, dataLen)
		return append(b, make([]byte, rest)...)
	}
	for _, tc := range []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"short", make([]byte, 31), false},
		{"exact", hdr(2, 3, 7), true},
		{"name overflows", hdr(1<<63, 0, 8), false},
		{"data wraps", hdr(2, ^uint64(0)-3, 8), false},
		{"trailing", hdr(1, 1, 4), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseVariable(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("err %v, want ok=%v", err, tc.ok)
			}
		})
	}
	list := func(listSize, hdrSize, sigSize uint32, body int) []byte {
		b := EFICertSHA256GUID[:]
		b = binary.LittleEndian.AppendUint32(bytes.Clone(b), listSize)
		b = binary.LittleEndian.AppendUint32(b, hdrSize)
		b = binary.LittleEndian.AppendUint32(b, sigSize)
		return append(b, make([]byte, body)...)
	}
	for _, tc := range []struct {
		name string
		in   []byte
		n    int
		ok   bool
	}{
		{"two hashes", list(28+96, 0, 48, 96), 2, true},
		{"list size past end", list(1<<31, 0, 48, 96), 0, false},
		{"list size below header", list(4, 0, 48, 0), 0, false},
		{"header size past list", list(28+48, 1<<30, 48, 48), 0, false},
		{"zero signature size", list(28+48, 0, 0, 48), 0, false},
		{"ragged", list(28+50, 0, 48, 50), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseSignatureLists(tc.in)
			if (err == nil) != tc.ok || len(s) != tc.n {
				t.Fatalf("%d signatures, err %v; want %d ok=%v", len(s), err, tc.n, tc.ok)
			}
		})
	}
}

func TestGUIDString(t *testing.T) {
	if s := EFIGlobalVariable.String(); s != "8be4df61-93ca-11d2-aa0d-00e098032b8c" {
		t.Fatal(s)
	}
}
