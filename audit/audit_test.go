package audit_test

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/ratatouille/rat/audit"
	"github.com/ratatouille/rat/audit/policysig/policysigtest"
	"github.com/ratatouille/rat/audit/simbundle"
	"github.com/ratatouille/rat/evidence/failure"
	"github.com/ratatouille/rat/evidence/protocol"
)

const (
	realLog      = "../testdata/ima/ubuntu2404-kernel68-ima-ng-sha256.ascii"
	realEventLog = "../evidence/eventlog/testdata/secureboot-on.bin"
)

var (
	fixOnce     sync.Once
	good, viol  *simbundle.Fixture
	noLog       *simbundle.Fixture
	fixErr      error
	fixturesDir string
)

// fixtures builds the two simulator fixtures once (the simulator is a
// process-wide singleton and quoting is the slow part).
func fixtures(t testing.TB) (*simbundle.Fixture, *simbundle.Fixture) {
	t.Helper()
	fixOnce.Do(func() {
		fixturesDir, fixErr = os.MkdirTemp("", "audit-fixtures")
		if fixErr != nil {
			return
		}
		d1, d2, d3 := fixturesDir+"/good", fixturesDir+"/viol", fixturesDir+"/nolog"
		_ = os.Mkdir(d1, 0o755)
		_ = os.Mkdir(d2, 0o755)
		_ = os.Mkdir(d3, 0o755)
		if good, fixErr = simbundle.Build(realLog, d1, simbundle.Options{EventLog: realEventLog}); fixErr != nil {
			return
		}
		if viol, fixErr = simbundle.Build(realLog, d2, simbundle.Options{Violation: true, EventLog: realEventLog}); fixErr != nil {
			return
		}
		noLog, fixErr = simbundle.Build(realLog, d3, simbundle.Options{})
	})
	if fixErr != nil {
		t.Fatalf("fixtures: %v", fixErr)
	}
	return good, viol
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fixturesDir != "" {
		os.RemoveAll(fixturesDir)
	}
	os.Exit(code)
}

func trust(f *simbundle.Fixture) []audit.Option {
	return []audit.Option{
		audit.WithEKRootsDir(f.EKRootsDir),
		audit.WithPolicyKey(f.PolicyKeyPEM),
		audit.WithoutTlogUnsafe(),
		audit.WithHubKey(&f.HubKey.PublicKey),
	}
}

func encode(t testing.TB, f *simbundle.Fixture, recs []*protocol.Evidence, signed bool) []byte {
	t.Helper()
	b, err := f.Encode(recs, signed)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func verify(t testing.TB, b []byte, opts ...audit.Option) *audit.Report {
	t.Helper()
	rep, err := audit.Verify(bytes.NewReader(b), opts...)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return rep
}

func dump(t testing.TB, rep *audit.Report) string {
	var b strings.Builder
	rep.WriteText(&b)
	return b.String()
}

func TestTrustedBundle(t *testing.T) {
	f, _ := fixtures(t)
	for _, signed := range []bool{false, true} {
		rep := verify(t, encode(t, f, f.Records, signed), trust(f)...)
		if rep.Verdict != audit.Trusted {
			t.Fatalf("signed=%v: verdict %s, want TRUSTED\n%s", signed, rep.Verdict, dump(t, rep))
		}
		if len(rep.Reboots) != 1 || len(rep.Segments) != 1 || rep.Quotes != 7 || rep.Records != 8 {
			t.Fatalf("reboots %d, segments %d, quotes %d, records %d\n%s", len(rep.Reboots), len(rep.Segments), rep.Quotes, rep.Records, dump(t, rep))
		}
		if c, _ := rep.Check(audit.CheckBundleSignature); signed != (c.Result == audit.Pass) {
			t.Fatalf("signed=%v: bundle signature check %+v", signed, c)
		}
		if c, _ := rep.Check(audit.CheckEventLog); c.Result != audit.Pass {
			t.Fatalf("event log: %+v", c)
		}
		if !strings.Contains(strings.Join(rep.Proven, "\n"), "continuous from") {
			t.Fatalf("no continuity statement:\n%s", dump(t, rep))
		}
	}
}

// An air-gapped device's own export: self-issued nonces are accepted when
// each is derived from the previous quote, and the report says freshness
// was not available. A record whose nonce is not so derived fails.
func TestSelfIssued(t *testing.T) {
	fixtures(t)
	dir := t.TempDir()
	f, err := simbundle.Build(realLog, dir, simbundle.Options{SelfIssued: true, EventLog: realEventLog})
	if err != nil {
		t.Fatal(err)
	}
	rep := verify(t, encode(t, f, f.Records, false), trust(f)...)
	if rep.Verdict != audit.Trusted || !rep.SelfIssued || !strings.Contains(strings.Join(rep.Trusted, "\n"), "self-issued") {
		t.Fatalf("verdict %s, self-issued %v\n%s", rep.Verdict, rep.SelfIssued, dump(t, rep))
	}
	// The good fixture's hub nonces flagged as self-issued: the derivation
	// does not hold, and the quote signature forbids changing the claims.
	g, _ := fixtures(t)
	recs := append([]*protocol.Evidence(nil), g.Records...)
	recs[0] = f.Records[0] // a self-issued record from another device
	rep = verify(t, encode(t, g, recs, false), trust(g)...)
	if rep.Verdict == audit.Trusted {
		t.Fatalf("foreign self-issued record accepted\n%s", dump(t, rep))
	}
}

// A quote whose claims count more (or fewer) IMA entries than its PCR 10
// covers: the replay holds, so the verdict stands, with a warning that names
// the record and both counts (the hub reports the same event).
func TestIMACountClaim(t *testing.T) {
	fixtures(t)
	for _, off := range []int{2, -1} {
		f, err := simbundle.Build(realLog, t.TempDir(), simbundle.Options{EventLog: realEventLog, MiscountIMA: off})
		if err != nil {
			t.Fatal(err)
		}
		rep := verify(t, encode(t, f, f.Records, false), trust(f)...)
		if rep.Verdict != audit.Trusted {
			t.Fatalf("miscount %d: verdict %s\n%s", off, rep.Verdict, dump(t, rep))
		}
		var warned []audit.Failure
		for _, fl := range rep.Failures {
			if fl.ID == failure.IMACountClaim {
				warned = append(warned, fl)
			}
		}
		if len(warned) != 1 || warned[0].Severity != failure.Warning || !strings.Contains(warned[0].Context, "claims say") {
			t.Fatalf("miscount %d: count warnings %+v\n%s", off, warned, dump(t, rep))
		}
		if c, _ := rep.Check(audit.CheckIMAReplay); c.Result != audit.Pass || !strings.Contains(c.Detail, "claims say") {
			t.Fatalf("miscount %d: ima replay %+v", off, c)
		}
	}
	// The good fixture has no such warning.
	g, _ := fixtures(t)
	for _, fl := range verify(t, encode(t, g, g.Records, false), trust(g)...).Failures {
		if fl.ID == failure.IMACountClaim {
			t.Fatalf("good fixture: %s", fl)
		}
	}
}

// A bundle that starts in the middle of a boot: the replay is anchored at
// the first quote's PCR 10, and the entries before it are neither proven
// nor judged, so the verdict is INCONCLUSIVE, not TRUSTED, with nothing
// failed.
func TestStartsMidBoot(t *testing.T) {
	f, _ := fixtures(t)
	rep := verify(t, encode(t, f, f.Records[2:], false), trust(f)...)
	for _, fl := range rep.Failures {
		if fl.Severity == failure.Critical {
			t.Fatalf("critical failure %s\n%s", fl, dump(t, rep))
		}
	}
	if rep.Verdict != audit.Inconclusive {
		t.Fatalf("verdict %s\n%s", rep.Verdict, dump(t, rep))
	}
	if c, _ := rep.Check(audit.CheckIMAReplay); c.Result != audit.NotChecked || !strings.Contains(c.Detail, "not in the bundle") {
		t.Fatalf("ima replay %+v", c)
	}
}

// A keylessly signed policy (virtual Sigstore: Fulcio, Rekor, TSA): the
// auditor's identity and issuer must match the certificate, and the
// Sigstore trust must be the auditor's.
func TestKeylessPolicy(t *testing.T) {
	f, _ := fixtures(t)
	vs, err := policysigtest.New()
	if err != nil {
		t.Fatal(err)
	}
	const who, iss = "policy-admin@example.com", "https://issuer.example.com"
	sb, err := vs.SignBundle(who, iss, f.Policy.Document, policysigtest.Parts{})
	if err != nil {
		t.Fatal(err)
	}
	keyless := *f
	pol := *f.Policy
	pol.SigstoreBundle = sb
	keyless.Policy = &pol
	b := encode(t, &keyless, f.Records, false)
	base := []audit.Option{audit.WithEKRootsDir(f.EKRootsDir), audit.WithHubKey(&f.HubKey.PublicKey)}
	other, err := policysigtest.New()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts []audit.Option
		want audit.Result
	}{
		{"right identity", []audit.Option{audit.WithTrustedMaterial(vs.TrustedMaterial(), "virtual"), audit.WithIdentity(iss, who)}, audit.Pass},
		{"other identity", []audit.Option{audit.WithTrustedMaterial(vs.TrustedMaterial(), "virtual"), audit.WithIdentity(iss, "mallory@example.com")}, audit.Fail},
		{"other issuer", []audit.Option{audit.WithTrustedMaterial(vs.TrustedMaterial(), "virtual"), audit.WithIdentity("https://evil.example.com", who)}, audit.Fail},
		{"other Sigstore", []audit.Option{audit.WithTrustedMaterial(other.TrustedMaterial(), "other"), audit.WithIdentity(iss, who)}, audit.Fail},
		{"no trusted root", []audit.Option{audit.WithIdentity(iss, who)}, audit.NotChecked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := verify(t, b, append(base, tc.opts...)...)
			c, _ := rep.Check(audit.CheckPolicySignature)
			if c.Result != tc.want {
				t.Fatalf("policy signature %+v, want %s\n%s", c, tc.want, dump(t, rep))
			}
			if (tc.want == audit.Pass) != (rep.Verdict == audit.Trusted) {
				t.Fatalf("verdict %s\n%s", rep.Verdict, dump(t, rep))
			}
		})
	}
}

// A device without a firmware event log: PCRs 0-9 are unexplained, so
// the verdict is INCONCLUSIVE unless the auditor waives that check, and
// then the waiver is listed as trusted.
func TestEventLogMissing(t *testing.T) {
	fixtures(t)
	b := encode(t, noLog, noLog.Records, false)
	rep := verify(t, b, trust(noLog)...)
	if c, _ := rep.Check(audit.CheckEventLog); rep.Verdict != audit.Inconclusive || c.Result != audit.NotChecked {
		t.Fatalf("verdict %s, event log %+v\n%s", rep.Verdict, c, dump(t, rep))
	}
	rep = verify(t, b, append(trust(noLog), audit.Waive(audit.CheckEventLog, "board keeps no event log"))...)
	if rep.Verdict != audit.Trusted || !strings.Contains(strings.Join(rep.Trusted, "\n"), "board keeps no event log") {
		t.Fatalf("waived: verdict %s\n%s", rep.Verdict, dump(t, rep))
	}
}

// Without the auditor's own trust anchors nothing fails, but the verdict
// cannot be TRUSTED: each missing anchor is a check not made.
func TestInconclusiveWithoutTrust(t *testing.T) {
	f, _ := fixtures(t)
	b := encode(t, f, f.Records, false)
	rep := verify(t, b)
	if rep.Verdict != audit.Inconclusive {
		t.Fatalf("verdict %s, want INCONCLUSIVE\n%s", rep.Verdict, dump(t, rep))
	}
	for _, name := range []string{audit.CheckEKCert, audit.CheckAKBinding, audit.CheckPolicySignature} {
		if c, _ := rep.Check(name); c.Result != audit.NotChecked {
			t.Errorf("%s: %s, want not checked", name, c.Result)
		}
	}
	if c, _ := rep.Check(audit.CheckQuotes); c.Result != audit.Pass {
		t.Errorf("quotes: %+v", c)
	}
}

func TestViolationNamesFile(t *testing.T) {
	_, v := fixtures(t)
	rep := verify(t, encode(t, v, v.Records, false), trust(v)...)
	if rep.Verdict != audit.Untrusted {
		t.Fatalf("verdict %s, want UNTRUSTED\n%s", rep.Verdict, dump(t, rep))
	}
	var hit *audit.Failure
	for i := range rep.Failures {
		if rep.Failures[i].Fields["path"] == v.Evil {
			hit = &rep.Failures[i]
		}
	}
	if hit == nil || hit.ID != failure.IMANotInAllowlist || hit.Time == 0 || hit.Seq == 0 {
		t.Fatalf("no failure naming %s with time and seq:\n%s", v.Evil, dump(t, rep))
	}
	// The same path is measured again in boot 2 only if it is among the
	// first 40 entries; either way every failure is the policy's.
	for _, f := range rep.Failures {
		if f.Severity == failure.Critical && f.ID != failure.IMANotInAllowlist {
			t.Errorf("unexpected failure %s", f)
		}
	}
}

// Drop, reorder and duplicate quotes: never TRUSTED.
func TestChainTampering(t *testing.T) {
	f, _ := fixtures(t)
	recs := f.Records
	with := func(fn func([]*protocol.Evidence) []*protocol.Evidence) []*protocol.Evidence {
		return fn(append([]*protocol.Evidence(nil), recs...))
	}
	cases := []struct {
		name string
		recs []*protocol.Evidence
		want string // a failure id the report must contain
	}{
		{"drop a middle quote", with(func(r []*protocol.Evidence) []*protocol.Evidence { return append(r[:3], r[4:]...) }), failure.EvidenceSeqGap},
		{"drop the IMA-only chunk", with(func(r []*protocol.Evidence) []*protocol.Evidence { return append(r[:1], r[2:]...) }), failure.EvidenceSeqGap},
		{"swap two quotes", with(func(r []*protocol.Evidence) []*protocol.Evidence { r[3], r[4] = r[4], r[3]; return r }), failure.EvidenceReplay},
		{"duplicate a quote", with(func(r []*protocol.Evidence) []*protocol.Evidence {
			return append(r[:4], append([]*protocol.Evidence{r[3]}, r[4:]...)...)
		}), failure.EvidenceReplay},
		{"drop the reboot quote", with(func(r []*protocol.Evidence) []*protocol.Evidence { return append(r[:6], r[7:]...) }), failure.EvidenceSeqGap},
		{"claim thinning to hide a drop", with(func(r []*protocol.Evidence) []*protocol.Evidence {
			c := *r[4]
			c.Thinned = 1
			return append(r[:3], append([]*protocol.Evidence{&c}, r[5:]...)...)
		}), failure.EvidenceChainBroken},
		{"foreign quote swapped in", with(func(r []*protocol.Evidence) []*protocol.Evidence { _, v := fixtures(t); r[2] = v.Records[2]; return r }), failure.QuoteInvalidSignature},
		{"PCR 10 value changed", with(func(r []*protocol.Evidence) []*protocol.Evidence {
			c := *r[2]
			c.PCRs = map[uint16]map[int][]byte{0x0b: {}}
			for k, v := range r[2].PCRs[0x0b] {
				c.PCRs[0x0b][k] = v
			}
			c.PCRs[0x0b][10] = make([]byte, 32)
			r[2] = &c
			return r
		}), failure.QuotePCRDigest},
		{"IMA entry removed", with(func(r []*protocol.Evidence) []*protocol.Evidence {
			c := *r[2]
			es := f.Entries[int(c.IMAStart)+1 : len(f.Entries)/3]
			c.IMA = marshal(es)
			c.IMAStart++
			r[2] = &c
			return r
		}), failure.IMALogTruncated},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rep := verify(t, encode(t, f, tc.recs, false), trust(f)...)
			if rep.Verdict == audit.Trusted {
				t.Fatalf("TRUSTED after %s\n%s", tc.name, dump(t, rep))
			}
			found := false
			for _, fl := range rep.Failures {
				found = found || fl.ID == tc.want
			}
			if !found {
				t.Fatalf("no %s failure\n%s", tc.want, dump(t, rep))
			}
		})
	}
}

// A policy that says it applies from a later record than the first one it
// is placed before would judge those records by a policy not in force.
func TestPolicyPlacedEarly(t *testing.T) {
	f, _ := fixtures(t)
	late := *f
	p := *f.Policy
	p.FromSeq = 4
	late.Policy = &p
	rep := verify(t, encode(t, &late, f.Records, false), trust(f)...)
	found := false
	for _, fl := range rep.Failures {
		found = found || fl.ID == failure.RuntimePolicyInvalid
	}
	if rep.Verdict != audit.Untrusted || !found {
		t.Fatalf("verdict %s\n%s", rep.Verdict, dump(t, rep))
	}
}

func TestUnusableInput(t *testing.T) {
	f, _ := fixtures(t)
	b := encode(t, f, f.Records, false)
	for _, in := range [][]byte{nil, []byte("not a bundle"), b[:len(b)/2], append(append([]byte(nil), b...), 0)} {
		if _, err := audit.Verify(bytes.NewReader(in), trust(f)...); !errors.Is(err, audit.ErrUnusable) {
			t.Fatalf("err = %v, want ErrUnusable", err)
		}
	}
}
