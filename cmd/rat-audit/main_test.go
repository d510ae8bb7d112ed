package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ratatouille/rat/audit/simbundle"
	"github.com/ratatouille/rat/evidence/eventlog"
)

var (
	once     sync.Once
	fx, fxV  *simbundle.Fixture
	fxErr    error
	fixtures string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if fixtures != "" {
		os.RemoveAll(fixtures)
	}
	os.Exit(code)
}

type files struct {
	dir, good, viol, hubKey, polKey, ekRoots string
}

// setup builds real simulator bundles once and writes the files an
// auditor would have.
func setup(t *testing.T) files {
	t.Helper()
	once.Do(func() {
		if fixtures, fxErr = os.MkdirTemp("", "rat-audit"); fxErr != nil {
			return
		}
		_ = os.Mkdir(filepath.Join(fixtures, "roots"), 0o755)
		_ = os.Mkdir(filepath.Join(fixtures, "roots-v"), 0o755)
		log := "../../testdata/ima/ubuntu2404-kernel68-ima-ng-sha256.ascii"
		fw := "../../evidence/eventlog/testdata/secureboot-on.bin"
		if fx, fxErr = simbundle.Build(log, filepath.Join(fixtures, "roots"), simbundle.Options{EventLog: fw}); fxErr != nil {
			return
		}
		fxV, fxErr = simbundle.Build(log, filepath.Join(fixtures, "roots-v"), simbundle.Options{Violation: true})
	})
	if fxErr != nil {
		t.Fatal(fxErr)
	}
	fs := files{dir: fixtures, good: filepath.Join(fixtures, "good.cbor"), viol: filepath.Join(fixtures, "viol.cbor"),
		hubKey: filepath.Join(fixtures, "hub.pem"), polKey: filepath.Join(fixtures, "cosign.pub"), ekRoots: fx.EKRootsDir}
	g, err := fx.Encode(fx.Records, true)
	if err != nil {
		t.Fatal(err)
	}
	v, err := fxV.Encode(fxV.Records, false)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&fx.HubKey.PublicKey)
	for p, b := range map[string][]byte{fs.good: g, fs.viol: v, fs.hubKey: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), fs.polKey: fx.PolicyKeyPEM} {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return fs
}

func runCLI(args ...string) (int, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String() + errb.String()
}

func TestVerifyExitCodes(t *testing.T) {
	fs := setup(t)
	trustFlags := []string{"--ek-roots", fs.ekRoots, "--key", fs.polKey, "--without-tlog-unsafe", "--hub-key", fs.hubKey}
	// The violating fixture has its own EK CA and policy key.
	violKey := filepath.Join(fs.dir, "cosign-v.pub")
	if err := os.WriteFile(violKey, fxV.PolicyKeyPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(fs.dir, "garbage.cbor")
	_ = os.WriteFile(garbage, []byte("not a bundle"), 0o644)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"trusted", append([]string{"verify", fs.good}, trustFlags...), 0, "verdict: TRUSTED"},
		{"trusted json", append([]string{"verify", fs.good, "--json"}, trustFlags...), 0, `"verdict": "TRUSTED"`},
		{"no anchors: inconclusive", []string{"verify", fs.good}, 1, "verdict: INCONCLUSIVE"},
		{"violation", []string{"verify", fs.viol, "--ek-roots", fxV.EKRootsDir, "--key", violKey, "--without-tlog-unsafe", "--waive", "event-log-replay=x", "--waive", "ak-binding=x"}, 1, fxV.Evil},
		{"wrong policy key", append([]string{"verify", fs.good}, append(trustFlags[:2:2], "--key", violKey, "--without-tlog-unsafe", "--hub-key", fs.hubKey)...), 1, "policy-signatures    fail"},
		{"garbage", []string{"verify", garbage}, 2, "unusable"},
		{"missing file", []string{"verify", filepath.Join(fs.dir, "nope")}, 2, ""},
		{"usage", []string{"verify"}, 2, ""},
		{"unknown waiver", append([]string{"verify", fs.good, "--waive", "quote-signatures-typo=x"}, trustFlags...), 2, "unknown check"},
		{"inspect", []string{"inspect", fs.good}, 0, "reboot:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runCLI(tc.args...)
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d (want %d), output lacks %q:\n%s", code, tc.code, tc.want, out)
			}
		})
	}
}

func requireTools(t *testing.T, tools ...string) {
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if p := filepath.Join(os.Getenv("HOME"), "go", "bin", tool); fileExists(p) {
				t.Setenv("PATH", os.Getenv("PATH")+":"+filepath.Dir(p))
				continue
			}
			if os.Getenv("RAT_REQUIRE_INTEGRATION") == "1" {
				t.Fatalf("%s not installed and RAT_REQUIRE_INTEGRATION=1", tool)
			}
			t.Skipf("%s not installed", tool)
		}
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// verify.sh from export-open checks the good bundle with tpm2_checkquote,
// evmctl and cosign, and fails when a quote, a log or a policy is changed.
func TestExportOpenVerifySh(t *testing.T) {
	requireTools(t, "tpm2_checkquote", "tpm2_print", "tpm2_eventlog", "evmctl", "cosign")
	fs := setup(t)
	trustedRoot, _ := filepath.Abs("../../audit/policysig/testdata/trusted-root-public-good.json")
	runSh := func(t *testing.T, dir string) (int, string) {
		cmd := exec.Command("bash", filepath.Join(dir, "verify.sh"))
		cmd.Env = append(os.Environ(), "POLICY_KEY="+fs.polKey, "IGNORE_TLOG=1", "TRUSTED_ROOT="+trustedRoot)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	export := func(t *testing.T, name string) string {
		dir := filepath.Join(t.TempDir(), name)
		if code, out := runCLI("export-open", fs.good, dir); code != 0 {
			t.Fatalf("export-open: %d %s", code, out)
		}
		return dir
	}
	dir := export(t, "good")
	code, out := runSh(t, dir)
	if code != 0 {
		t.Fatalf("verify.sh on a good bundle: exit %d\n%s", code, out)
	}
	for _, want := range []string{"tpm2_checkquote", "tpm2_eventlog replays", "evmctl replays", "cosign verify-blob"} {
		if !strings.Contains(out, want) {
			t.Fatalf("verify.sh did not run %q:\n%s", want, out)
		}
	}
	quotes, _ := filepath.Glob(filepath.Join(dir, "quotes", "*"))
	if len(quotes) != 7 {
		t.Fatalf("%d quote dirs", len(quotes))
	}
	flip := func(t *testing.T, p string, at int) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if at < 0 {
			at += len(b)
		}
		b[at] ^= 1
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		mut  func(t *testing.T, dir string, quotes []string)
		want string // the layer whose check must fail
	}{
		{"attest byte", func(t *testing.T, d string, q []string) { flip(t, filepath.Join(q[2], "quote.attest"), -3) }, "quote"},
		{"PCR value", func(t *testing.T, d string, q []string) { flip(t, filepath.Join(q[3], "pcrs.bin"), 5) }, "quote"},
		{"claims", func(t *testing.T, d string, q []string) { flip(t, filepath.Join(q[1], "claims.cbor"), -2) }, "claims"},
		{"event log", func(t *testing.T, d string, q []string) {
			logs, _ := filepath.Glob(filepath.Join(d, "eventlog", "*.bin"))
			b, _ := os.ReadFile(logs[0])
			l, err := eventlog.Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range l.Events {
				if dg, ok := e.Digest(0x000b); ok && e.PCR == 4 {
					flip(t, logs[0], bytes.Index(b, dg)) // a PCR 4 digest: the boot loader
					return
				}
			}
			t.Fatal("no PCR 4 event")
		}, "firmware"},
		{"IMA log", func(t *testing.T, d string, q []string) { flip(t, filepath.Join(d, "ima", "boot-1.bin"), 200) }, "ima"},
		{"policy", func(t *testing.T, d string, q []string) {
			flip(t, filepath.Join(d, "policies", "01", "policy.json"), 30)
		}, "policy"},
		{"quote removed", func(t *testing.T, d string, q []string) { os.RemoveAll(q[3]) }, "chain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := export(t, strings.ReplaceAll(tc.name, " ", "-"))
			q, _ := filepath.Glob(filepath.Join(d, "quotes", "*"))
			tc.mut(t, d, q)
			code, out := runSh(t, d)
			if code != 1 || !strings.Contains(out, "FAILED  "+tc.want+" ") {
				t.Fatalf("verify.sh after changing %s: exit %d\n%s", tc.name, code, out)
			}
		})
	}
}
