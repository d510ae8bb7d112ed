package main

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const quoteFixtures = "../../evidence/quote/testdata/"

// quoteFiles writes the inputs of one verification into dir.
type quoteFiles struct{ ak, attest, sig, nonce, pcrs string }

func writeQuoteFixture(t *testing.T, dir, kind string) quoteFiles {
	t.Helper()
	read := func(n string) []byte {
		b, err := os.ReadFile(quoteFixtures + kind + "." + n)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	f := quoteFiles{
		ak: filepath.Join(dir, kind+".ak.pem"), attest: quoteFixtures + kind + ".attest", sig: quoteFixtures + kind + ".sig",
		nonce: filepath.Join(dir, "nonce"), pcrs: quoteFixtures + kind + ".pcrs",
	}
	write(t, f.ak, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: read("ak.der")}))
	write(t, f.nonce, []byte("fixture nonce"))
	return f
}

func write(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (f quoteFiles) args(extra ...string) []string {
	a := []string{"verify", "--ak", f.ak, "--quote", f.attest, "--sig", f.sig, "--nonce-file", f.nonce}
	return append(a, extra...)
}

func TestQuoteVerifyFixtures(t *testing.T) {
	dir := t.TempDir()
	ecc := writeQuoteFixture(t, dir, "ecc")
	rsa := writeQuoteFixture(t, dir, "rsa")

	// The same PCR values as JSON, and with PCR 3 changed.
	raw, _ := os.ReadFile(ecc.pcrs)
	vals := map[string]string{}
	for i := 0; i < 11; i++ {
		vals[fmt.Sprint(i)] = hex.EncodeToString(raw[i*32 : (i+1)*32])
	}
	js, _ := json.Marshal(map[string]any{"sha256": vals})
	pcrsJSON := filepath.Join(dir, "pcrs.json")
	write(t, pcrsJSON, js)
	vals["3"] = strings.Repeat("ab", 32)
	js, _ = json.Marshal(map[string]any{"sha256": vals})
	badJSON := filepath.Join(dir, "bad.json")
	write(t, badJSON, js)
	attest, _ := os.ReadFile(ecc.attest)
	flipped := bytes.Clone(attest)
	flipped[len(flipped)-1] ^= 1
	flippedPath := filepath.Join(dir, "flipped.attest")
	write(t, flippedPath, flipped)
	otherNonce := filepath.Join(dir, "other-nonce")
	write(t, otherNonce, []byte("fixture nonce!"))
	junk := filepath.Join(dir, "junk")
	write(t, junk, []byte("not a key"))

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"ecc raw values", ecc.args("--pcrs", ecc.pcrs), 0, "pcrDigest matches"},
		{"rsa raw values", rsa.args("--pcrs", rsa.pcrs, "--pcr-list", "sha256:0-10"), 0, "pcrDigest matches"},
		{"ecc json", ecc.args("--pcrs", pcrsJSON), 0, "pcrDigest matches"},
		{"flags in any order", append([]string{"verify", "--pcrs", pcrsJSON}, ecc.args()[1:]...), 0, "quote valid"},
		{"no pcrs", ecc.args(), 0, "pcrDigest NOT checked"},
		{"changed PCR value", ecc.args("--pcrs", badJSON), 1, "tpm.quote.pcr_digest_mismatch"},
		{"other nonce", quoteFiles{ecc.ak, ecc.attest, ecc.sig, otherNonce, ""}.args(), 1, "tpm.quote.nonce_mismatch"},
		{"flipped attest byte", quoteFiles{ecc.ak, flippedPath, ecc.sig, ecc.nonce, ""}.args(), 1, "tpm.quote.invalid_signature"},
		{"rsa signature, ecc AK", quoteFiles{ecc.ak, rsa.attest, rsa.sig, ecc.nonce, ""}.args(), 1, "tpm.quote.invalid_signature_scheme"},
		{"other AK", quoteFiles{rsa.ak, ecc.attest, ecc.sig, ecc.nonce, ""}.args(), 1, "tpm.quote.invalid_signature_scheme"},
		{"PCR 11 required", ecc.args("--pcr-list", "0-11"), 1, "tpm.quote.pcr_selection"},
		{"sha1 required", ecc.args("--pcr-list", "sha1:0"), 1, "tpm.quote.pcr_selection"},
		{"junk signature", quoteFiles{ecc.ak, ecc.attest, junk, ecc.nonce, ""}.args(), 2, "tpm.quote.malformed"},
		{"junk AK", quoteFiles{junk, ecc.attest, ecc.sig, ecc.nonce, ""}.args(), 2, "not a PEM or DER public key"},
		{"raw values of wrong length", ecc.args("--pcrs", ecc.pcrs, "--pcr-list", "0-9"), 2, "is not 10 sha256 values"},
		{"bad pcr list", ecc.args("--pcr-list", "0-24"), 2, "PCRs are 0-23"},
		{"unknown bank", ecc.args("--bank", "md5"), 2, "unknown bank"},
		{"missing quote", quoteFiles{ecc.ak, "/nonexistent", ecc.sig, ecc.nonce, ""}.args(), 2, "no such file"},
		{"missing flag", []string{"verify", "--ak", ecc.ak}, 2, "usage"},
		{"no verb", nil, 2, "usage"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := runQuote(tc.args, &out, &errb)
			all := out.String() + errb.String()
			if code != tc.code || !strings.Contains(all, tc.want) {
				t.Fatalf("code %d (want %d), output %q, want %q", code, tc.code, all, tc.want)
			}
		})
	}
}

func TestQuoteVerifyJSON(t *testing.T) {
	ecc := writeQuoteFixture(t, t.TempDir(), "ecc")
	for _, tc := range []struct {
		name  string
		args  []string
		code  int
		valid bool
	}{
		{"valid", ecc.args("--pcrs", ecc.pcrs, "--json"), 0, true},
		{"invalid", ecc.args("--pcr-list", "0-12", "--json"), 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := runQuote(tc.args, &out, &errb); code != tc.code {
				t.Fatalf("code %d: %s %s", code, out.String(), errb.String())
			}
			var got struct {
				Valid   bool `json:"valid"`
				Failure *struct {
					ID string `json:"id"`
				} `json:"failure"`
				Attest struct {
					Magic     string `json:"magic"`
					ExtraData string `json:"extraData"`
					PCRSelect []struct {
						Hash string `json:"hash"`
						PCRs []int  `json:"pcrs"`
					} `json:"pcrSelect"`
				} `json:"attest"`
			}
			if err := json.Unmarshal(out.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if got.Valid != tc.valid || (got.Failure == nil) != tc.valid {
				t.Fatalf("valid %v failure %v", got.Valid, got.Failure)
			}
			if got.Attest.Magic != "0xff544347" || got.Attest.ExtraData != hex.EncodeToString([]byte("fixture nonce")) ||
				len(got.Attest.PCRSelect) != 1 || got.Attest.PCRSelect[0].Hash != "sha256" || len(got.Attest.PCRSelect[0].PCRs) != 11 {
				t.Fatalf("attest %+v", got.Attest)
			}
		})
	}
}

func quoteTestTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("RAT_REQUIRE_INTEGRATION") == "1" {
			t.Fatalf("%s not installed and RAT_REQUIRE_INTEGRATION=1", name)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

// quoteTestSwtpm runs a real swtpm on free loopback ports, stopped by PID
// at the end of the test, and returns its tpm2-tools TCTI string.
func quoteTestSwtpm(t *testing.T) string {
	t.Helper()
	bin := quoteTestTool(t, "swtpm")
	for attempt := 0; attempt < 5; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		cmd := exec.Command(bin, "socket", "--tpm2", "--tpmstate", "dir="+t.TempDir(),
			"--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port),
			"--ctrl", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port+1),
			"--flags", "not-need-init,startup-clear")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 100; i++ {
			if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
				c.Close()
				t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
				return fmt.Sprintf("swtpm:host=127.0.0.1,port=%d", port)
			}
			time.Sleep(20 * time.Millisecond)
		}
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
	}
	t.Fatal("could not start swtpm")
	return ""
}

// TestQuoteVerifyTpm2Quote verifies quotes that tpm2-tools made on a real
// swtpm (an AK under the EK, as tpm2_createak makes it), in both PCR file
// forms tpm2_quote writes, and checks that tpm2_checkquote agrees.
func TestQuoteVerifyTpm2Quote(t *testing.T) {
	for _, n := range []string{"tpm2_createek", "tpm2_createak", "tpm2_quote", "tpm2_flushcontext", "tpm2_checkquote"} {
		quoteTestTool(t, n)
	}
	for _, alg := range []struct{ key, scheme string }{{"ecc", "ecdsa"}, {"rsa", "rsassa"}} {
		t.Run(alg.key, func(t *testing.T) {
			tcti := quoteTestSwtpm(t)
			dir := t.TempDir()
			run := func(name string, args ...string) {
				t.Helper()
				cmd := exec.Command(name, args...)
				cmd.Dir = dir
				cmd.Env = append(os.Environ(), "TPM2TOOLS_TCTI="+tcti)
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("%s %v: %v\n%s", name, args, err, out)
				}
			}
			nonce := []byte("tpm2-tools nonce")
			write(t, filepath.Join(dir, "nonce"), nonce)
			// Without a resource manager, transient objects stay loaded:
			// flush them between tools.
			run("tpm2_createek", "-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub")
			run("tpm2_flushcontext", "-t")
			run("tpm2_createak", "-C", "ek.ctx", "-c", "ak.ctx", "-G", alg.key, "-g", "sha256", "-s", alg.scheme, "-u", "ak.pem", "-f", "pem", "-n", "ak.name")
			run("tpm2_flushcontext", "-t")
			run("tpm2_flushcontext", "-s")
			run("tpm2_quote", "-c", "ak.ctx", "-l", "sha256:0,1,2,3,4,5,6,7,8,9,10", "-q", hex.EncodeToString(nonce),
				"-m", "q.attest", "-s", "q.sig", "-o", "pcrs.bin", "-g", "sha256")
			run("tpm2_checkquote", "-u", "ak.pem", "-m", "q.attest", "-s", "q.sig", "-f", "pcrs.bin", "-g", "sha256", "-q", hex.EncodeToString(nonce))
			f := quoteFiles{filepath.Join(dir, "ak.pem"), filepath.Join(dir, "q.attest"), filepath.Join(dir, "q.sig"), filepath.Join(dir, "nonce"), ""}
			var out, errb bytes.Buffer
			if code := runQuote(f.args("--pcrs", filepath.Join(dir, "pcrs.bin")), &out, &errb); code != 0 {
				t.Fatalf("tpm2_quote quote refused (code %d): %s %s", code, out.String(), errb.String())
			}
			if !strings.Contains(out.String(), "pcrDigest matches") {
				t.Fatalf("output %s", out.String())
			}
			// The AK in the PEM is really an ECC / RSA key.
			blk, _ := pem.Decode(mustRead(t, f.ak))
			k, err := x509.ParsePKIXPublicKey(blk.Bytes)
			if err != nil || !strings.Contains(strings.ToLower(fmt.Sprintf("%T", k)), map[string]string{"ecc": "ecdsa", "rsa": "rsa"}[alg.key]) {
				t.Fatalf("AK %T %v", k, err)
			}
			// A wrong nonce is refused.
			write(t, f.nonce, []byte("another nonce"))
			out.Reset()
			if code := runQuote(f.args("--pcrs", filepath.Join(dir, "pcrs.bin")), &out, &errb); code != 1 || !strings.Contains(out.String(), "nonce_mismatch") {
				t.Fatalf("wrong nonce: code %d %s", code, out.String())
			}
		})
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
