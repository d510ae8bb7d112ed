package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const (
	confCases  = "../../audit/policysig/testdata/sigstore-conformance/bundle-verify/"
	publicGood = "../../audit/policysig/testdata/trusted-root-public-good.json"
	beaconSAN  = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
	ghIssuer   = "https://token.actions.githubusercontent.com"
)

func findCosign(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("cosign"); err == nil {
		return p
	}
	home, _ := os.UserHomeDir()
	if p := filepath.Join(home, "go", "bin", "cosign"); home != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("RAT_REQUIRE_INTEGRATION") == "1" {
		t.Fatal("cosign not found and RAT_REQUIRE_INTEGRATION=1")
	}
	t.Skip("cosign not found")
	return ""
}

func cosignCmd(t *testing.T, dir string, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(findCosign(t), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "COSIGN_PASSWORD=pw", "TUF_ROOT="+filepath.Join(dir, "tuf"))
	return cmd.CombinedOutput()
}

type cliCase struct {
	name     string
	run      func([]string, *bytes.Buffer, *bytes.Buffer) int
	args     []string
	wantCode int
	wantOut  string
}

func runCLICases(t *testing.T, cases []cliCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := c.run(c.args, &out, &errb)
			if code != c.wantCode || !strings.Contains(out.String()+errb.String(), c.wantOut) {
				t.Fatalf("exit %d (want %d), stdout %q, stderr %q", code, c.wantCode, out.String(), errb.String())
			}
		})
	}
}

func sign(a []string, o, e *bytes.Buffer) int   { return policySign(a, o, e) }
func verify(a []string, o, e *bytes.Buffer) int { return policyVerify(a, o, e) }

// TestPolicySignVerifyKey: a PKCS#8 key made here signs, our verify
// accepts for a key-only group and refuses otherwise.
func TestPolicySignVerifyKey(t *testing.T) {
	dir := t.TempDir()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	pubDER, _ := x509.MarshalPKIXPublicKey(k.Public())
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherDER, _ := x509.MarshalPKIXPublicKey(other.Public())
	files := map[string][]byte{
		"k.pem":      pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		"k.pub":      pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}),
		"other.pub":  pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: otherDER}),
		"p.json":     []byte(`{"meta":{"version":1}}` + "\n"),
		"q.json":     []byte(`{"meta":{"version":2}}` + "\n"),
		"group.json": []byte(`{"public_keys":["` + strings.ReplaceAll(string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})), "\n", `\n`) + `"],"key_only_without_tlog_unsafe":true}`),
	}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p := func(n string) string { return filepath.Join(dir, n) }
	runCLICases(t, []cliCase{
		{name: "sign", run: sign, args: []string{"--policy", p("p.json"), "--key", p("k.pem")}, wantOut: "no transparency-log entry"},
		{name: "verify key-only", run: verify, args: []string{"--bundle", p("p.json.sigstore.json"), "--policy", p("p.json"), "--key", p("k.pub"), "--without-tlog-unsafe"}, wantOut: "ok: "},
		{name: "verify with group file", run: verify, args: []string{"--bundle", p("p.json.sigstore.json"), "--policy", p("p.json"), "--signer-policy", p("group.json"), "--trusted-root", publicGood, "--json"}, wantOut: `"key_signed": true`},
		{name: "tlog required by default", run: verify, args: []string{"--bundle", p("p.json.sigstore.json"), "--policy", p("p.json"), "--key", p("k.pub"), "--trusted-root", publicGood}, wantCode: 1, wantOut: "REFUSED"},
		{name: "other policy", run: verify, args: []string{"--bundle", p("p.json.sigstore.json"), "--policy", p("q.json"), "--key", p("k.pub"), "--without-tlog-unsafe"}, wantCode: 1},
		{name: "other key", run: verify, args: []string{"--bundle", p("p.json.sigstore.json"), "--policy", p("p.json"), "--key", p("other.pub"), "--without-tlog-unsafe"}, wantCode: 1},
		{name: "two signer kinds", run: verify, args: []string{"--bundle", p("p.json.sigstore.json"), "--policy", p("p.json"), "--key", p("k.pub"), "--identity", "a@b", "--issuer", "x"}, wantCode: 2},
		{name: "keyless without trusted root", run: verify, args: []string{"--bundle", p("p.json.sigstore.json"), "--policy", p("p.json"), "--identity", "a@b", "--issuer", "x"}, wantCode: 2},
		{name: "missing bundle file", run: verify, args: []string{"--bundle", p("nope"), "--policy", p("p.json"), "--key", p("k.pub"), "--without-tlog-unsafe"}, wantCode: 2},
		{name: "sign without key", run: sign, args: []string{"--policy", p("p.json")}, wantCode: 2},
		{name: "sign with bad key", run: sign, args: []string{"--policy", p("p.json"), "--key", p("k.pub")}, wantCode: 2},
	})
}

// TestPolicyVerifyConformance: the CLI accepts a real public-good bundle
// for its identity and refuses other identities and DSSE bundles.
func TestPolicyVerifyConformance(t *testing.T) {
	art := confCases + "a.txt"
	runCLICases(t, []cliCase{
		{name: "happy path v0.3", run: verify, args: []string{"--bundle", confCases + "happy-path-v0.3/bundle.sigstore.json", "--policy", art, "--trusted-root", publicGood, "--identity", beaconSAN, "--issuer", ghIssuer}, wantOut: "rekor log"},
		{name: "regexp identity", run: verify, args: []string{"--bundle", confCases + "happy-path-v0.3/bundle.sigstore.json", "--policy", art, "--trusted-root", publicGood, "--identity-regexp", `https://github\.com/sigstore-conformance/.*`, "--issuer", ghIssuer}, wantOut: "ok: "},
		{name: "other identity", run: verify, args: []string{"--bundle", confCases + "happy-path-v0.3/bundle.sigstore.json", "--policy", art, "--trusted-root", publicGood, "--identity", "https://github.com/acme/x", "--issuer", ghIssuer}, wantCode: 1, wantOut: "signer not allowed"},
		{name: "dsse", run: verify, args: []string{"--bundle", confCases + "happy-path-intoto-in-dsse-v3/bundle.sigstore.json", "--policy", art, "--trusted-root", publicGood, "--identity", beaconSAN, "--issuer", ghIssuer}, wantCode: 1, wantOut: "DSSE"},
		{name: "bad trusted root", run: verify, args: []string{"--bundle", confCases + "happy-path-v0.3/bundle.sigstore.json", "--policy", art, "--trusted-root", art, "--identity", beaconSAN, "--issuer", ghIssuer}, wantCode: 2},
	})
}

// TestPolicySignCosign: cosign's own encrypted key signs through
// `rat policy sign`, and `cosign verify-blob` accepts the bundle; a
// cosign-made bundle passes `rat policy verify`.
func TestPolicySignCosign(t *testing.T) {
	dir := t.TempDir()
	if out, err := cosignCmd(t, dir, "generate-key-pair"); err != nil {
		t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
	}
	pol := filepath.Join(dir, "runtime_policy.json")
	if err := os.WriteFile(pol, []byte(`{"meta":{"version":1}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("COSIGN_PASSWORD", "pw")
	ours := filepath.Join(dir, "ours.sigstore.json")
	theirs := filepath.Join(dir, "theirs.sigstore.json")
	root, _ := filepath.Abs(publicGood)
	runCLICases(t, []cliCase{
		{name: "rat policy sign with cosign.key", run: sign, args: []string{"--policy", pol, "--key", filepath.Join(dir, "cosign.key"), "-o", ours}},
	})
	if out, err := cosignCmd(t, dir, "verify-blob", "--key", "cosign.pub", "--bundle", ours, "--new-bundle-format", "--insecure-ignore-tlog=true", "--trusted-root", root, pol); err != nil {
		t.Fatalf("cosign verify-blob refused our bundle: %v\n%s", err, out)
	}
	if out, err := cosignCmd(t, dir, "sign-blob", "--yes", "--key", "cosign.key", "--tlog-upload=false", "--new-bundle-format", "--bundle", theirs, pol); err != nil {
		t.Fatalf("cosign sign-blob: %v\n%s", err, out)
	}
	runCLICases(t, []cliCase{
		{name: "rat policy verify cosign bundle", run: verify, args: []string{"--bundle", theirs, "--policy", pol, "--key", filepath.Join(dir, "cosign.pub"), "--trusted-root", root, "--without-tlog-unsafe"}, wantOut: "ok: "},
		{name: "wrong password", run: func(a []string, o, e *bytes.Buffer) int {
			t.Setenv("COSIGN_PASSWORD", "nope")
			return policySign(a, o, e)
		}, args: []string{"--policy", pol, "--key", filepath.Join(dir, "cosign.key"), "-o", ours}, wantCode: 2, wantOut: "decrypt"},
	})
}
