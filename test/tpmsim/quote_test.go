package tpmsim

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/google/go-tpm-tools/client"
	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/legacy/tpm2"

	"github.com/ratatouille/rat/evidence/failure"
	"github.com/ratatouille/rat/evidence/quote"
)

type tpmQuote struct {
	ak          crypto.PublicKey
	attest, sig []byte
	pcrs        quote.PCRValues
	nonce       []byte
	clock       quote.ClockInfo
}

// makeQuote creates an AK in the endorsement hierarchy (so resetCount and
// restartCount are not obfuscated) and quotes PCRs 0-10 of the sha256 bank.
func makeQuote(t *testing.T, sim *simulator.Simulator, tmpl tpm2.Public, nonce []byte) tpmQuote {
	t.Helper()
	ak, err := client.NewKey(sim, tpm2.HandleEndorsement, tmpl)
	if err != nil {
		t.Fatalf("create AK: %v", err)
	}
	t.Cleanup(ak.Close)
	sel := tpm2.PCRSelection{Hash: tpm2.AlgSHA256, PCRs: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}
	q, err := ak.Quote(sel, nonce)
	if err != nil {
		t.Fatalf("quote: %v", err)
	}
	vals := map[int][]byte{}
	for i, v := range q.GetPcrs().GetPcrs() {
		vals[int(i)] = v
	}
	a, err := quote.DecodeAttest(q.GetQuote())
	if err != nil {
		t.Fatal(err)
	}
	return tpmQuote{ak: ak.PublicKey(), attest: q.GetQuote(), sig: q.GetRawSig(), pcrs: quote.PCRValues{quote.AlgSHA256: vals}, nonce: nonce, clock: a.ClockInfo}
}

func openSim(t *testing.T) *simulator.Simulator {
	t.Helper()
	sim, err := simulator.Get()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	// Put something in PCR 10, as IMA would.
	if err := tpm2.PCRExtend(sim, 10, tpm2.AlgSHA256, make([]byte, 32), ""); err != nil {
		t.Fatal(err)
	}
	return sim
}

func failureID(err error) string {
	var fe *failure.Error
	if errors.As(err, &fe) {
		return fe.Event.ID
	}
	return ""
}

func TestQuoteVerify(t *testing.T) {
	sim := openSim(t)
	nonce := []byte("verifier nonce 0123456789abcdef")
	for _, kt := range []struct {
		name string
		tmpl tpm2.Public
	}{{"ecc-p256", client.AKTemplateECC()}, {"rsa-2048", client.AKTemplateRSA()}} {
		t.Run(kt.name, func(t *testing.T) {
			q := makeQuote(t, sim, kt.tmpl, nonce)
			ok := []quote.Option{quote.WithNonce(nonce), quote.WithRequiredPCRs(quote.AlgSHA256, 0, 7, 10)}
			if _, err := quote.Verify(q.ak, q.attest, q.sig, q.pcrs, ok...); err != nil {
				t.Fatalf("genuine quote rejected: %v", err)
			}
			otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			flip := func(b []byte, i int) []byte { c := append([]byte(nil), b...); c[i] ^= 1; return c }
			wrongPCR := quote.PCRValues{quote.AlgSHA256: map[int][]byte{}}
			for k, v := range q.pcrs[quote.AlgSHA256] {
				wrongPCR[quote.AlgSHA256][k] = v
			}
			wrongPCR[quote.AlgSHA256][10] = make([]byte, 32)
			later := q.clock
			later.Clock += 1_000_000
			// A second quote in the same millisecond has the same clock:
			// not backwards.
			if _, err := quote.Verify(q.ak, q.attest, q.sig, q.pcrs, append(ok, quote.WithPrevious(q.clock))...); err != nil {
				t.Fatalf("a quote with the previous quote's clock rejected: %v", err)
			}
			for _, tc := range []struct {
				name   string
				ak     crypto.PublicKey
				attest []byte
				pcrs   quote.PCRValues
				opts   []quote.Option
				want   string
			}{
				{"wrong nonce", q.ak, q.attest, q.pcrs, []quote.Option{quote.WithNonce([]byte("another nonce"))}, failure.QuoteNonceMismatch},
				{"no nonce", q.ak, q.attest, q.pcrs, nil, failure.QuoteNonceMismatch},
				{"flipped attest byte", q.ak, flip(q.attest, len(q.attest)-1), q.pcrs, ok, failure.QuoteInvalidSignature},
				{"wrong PCR 10 value", q.ak, q.attest, wrongPCR, ok, failure.QuotePCRDigest},
				{"missing required PCR 16", q.ak, q.attest, q.pcrs, append(ok, quote.WithRequiredPCRs(quote.AlgSHA256, 16)), failure.QuotePCRSelection},
				{"clock went backwards", q.ak, q.attest, q.pcrs, append(ok, quote.WithPrevious(later)), failure.QuoteClockBackwards},
			} {
				t.Run(tc.name, func(t *testing.T) {
					_, err := quote.Verify(tc.ak, tc.attest, q.sig, tc.pcrs, tc.opts...)
					if got := failureID(err); got != tc.want {
						t.Fatalf("failure id = %q (%v), want %q", got, err, tc.want)
					}
				})
			}
			// A key of the other type, or another key of the same type.
			_, err := quote.Verify(&otherKey.PublicKey, q.attest, q.sig, q.pcrs, ok...)
			if id := failureID(err); id != failure.QuoteInvalidSignature && id != failure.QuoteInvalidScheme {
				t.Fatalf("quote verified under a foreign key: %v", err)
			}
		})
	}
}

// A second quote of the same AK is later in TPM time: WithPrevious accepts it.
func TestQuoteClockAdvances(t *testing.T) {
	sim := openSim(t)
	q1 := makeQuote(t, sim, client.AKTemplateECC(), []byte("n1"))
	q2 := makeQuote(t, sim, client.AKTemplateECC(), []byte("n2"))
	if _, err := quote.Verify(q2.ak, q2.attest, q2.sig, q2.pcrs, quote.WithNonce([]byte("n2")), quote.WithPrevious(q1.clock)); err != nil {
		t.Fatalf("later quote rejected: %v", err)
	}
}

// tpm2_checkquote (tpm2-tools) is an independent verifier of the same bytes.
func TestTPM2CheckquoteAgrees(t *testing.T) {
	if _, err := exec.LookPath("tpm2_checkquote"); err != nil {
		if os.Getenv("RAT_REQUIRE_INTEGRATION") == "1" {
			t.Fatal("tpm2_checkquote not installed and RAT_REQUIRE_INTEGRATION=1")
		}
		t.Skip("tpm2_checkquote not installed")
	}
	sim := openSim(t)
	nonce := []byte("checkquote nonce")
	q := makeQuote(t, sim, client.AKTemplateECC(), nonce)
	dir := t.TempDir()
	der, err := x509.MarshalPKIXPublicKey(q.ak)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	akPath := write("ak.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	m, s := write("quote.attest", q.attest), write("quote.sig", q.sig)
	run := func(n []byte) error {
		out, err := exec.Command("tpm2_checkquote", "-u", akPath, "-m", m, "-s", s, "-q", hex.EncodeToString(n), "-g", "sha256").CombinedOutput()
		if err != nil {
			return errors.New(string(out))
		}
		return nil
	}
	if err := run(nonce); err != nil {
		t.Fatalf("tpm2_checkquote rejects a quote we accept: %v", err)
	}
	if err := run([]byte("other")); err == nil {
		t.Fatal("tpm2_checkquote accepted a wrong nonce: the cross-check is not checking")
	}
}

// TestWriteFixtures regenerates evidence/quote/testdata (run with
// RAT_WRITE_FIXTURES=1): real simulator quotes for the evidence module's
// own tests, fuzz seeds and benchmarks, which cannot use the simulator.
func TestWriteFixtures(t *testing.T) {
	if os.Getenv("RAT_WRITE_FIXTURES") != "1" {
		t.Skip("set RAT_WRITE_FIXTURES=1 to regenerate evidence/quote/testdata")
	}
	sim := openSim(t)
	dir := "../../evidence/quote/testdata"
	for name, tmpl := range map[string]tpm2.Public{"ecc": client.AKTemplateECC(), "rsa": client.AKTemplateRSA()} {
		q := makeQuote(t, sim, tmpl, []byte("fixture nonce"))
		der, err := x509.MarshalPKIXPublicKey(q.ak)
		if err != nil {
			t.Fatal(err)
		}
		var pcrs []byte
		for i := 0; i <= 10; i++ {
			pcrs = append(pcrs, q.pcrs[quote.AlgSHA256][i]...)
		}
		for ext, b := range map[string][]byte{"ak.der": der, "attest": q.attest, "sig": q.sig, "pcrs": pcrs} {
			if err := os.WriteFile(filepath.Join(dir, name+"."+ext), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
