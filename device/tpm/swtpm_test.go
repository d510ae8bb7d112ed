package tpm

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/ratatouille/rat/evidence/quote"
)

// startSwtpm runs swtpm as a real process on two free loopback ports and
// returns its tcp:// address; it is stopped by PID when the test ends.
func startSwtpm(t *testing.T) string {
	t.Helper()
	return startSwtpmState(t, t.TempDir())
}

// requireTool finds a tool, skipping the test without it, or failing it
// when RAT_REQUIRE_INTEGRATION=1.
func requireTool(t *testing.T, name string) string {
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

func startSwtpmState(t *testing.T, state string) string {
	t.Helper()
	bin := requireTool(t, "swtpm")
	for attempt := 0; attempt < 5; attempt++ {
		port := freePortPair(t)
		cmd := exec.Command(bin, "socket", "--tpm2", "--tpmstate", "dir="+state,
			"--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port),
			"--ctrl", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port+1),
			"--flags", "not-need-init,startup-clear")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		for i := 0; i < 100; i++ {
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
				return "tcp://" + addr
			}
			if cmd.ProcessState != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		t.Logf("swtpm on port %d did not come up (%s); retrying", port, stderr.String())
	}
	t.Fatal("could not start swtpm")
	return ""
}

// freePortPair finds a port p with p and p+1 free on loopback.
func freePortPair(t *testing.T) int {
	t.Helper()
	for i := 0; i < 50; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1))
		l.Close()
		if err == nil {
			l2.Close()
			return p
		}
	}
	t.Fatal("no free port pair")
	return 0
}

func TestSwtpmQuoteVerifies(t *testing.T) {
	addr := startSwtpm(t)
	tp, err := Open(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	// What IMA does: extend PCR 10.
	if err := tp.Extend(10, bytes.Repeat([]byte{0xab}, 32)); err != nil {
		t.Fatal(err)
	}
	ak, err := tp.CreateAK()
	if err != nil {
		t.Fatal(err)
	}
	pcrs := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	nonce := []byte("hub nonce 1")
	q, err := ak.Quote(nonce, pcrs)
	if err != nil {
		t.Fatal(err)
	}
	vals := quote.PCRValues{quote.AlgSHA256: q.PCRs}
	res, err := quote.Verify(ak.Public, q.Attest, q.Signature, vals, quote.WithNonce(nonce), quote.WithRequiredPCRs(quote.AlgSHA256, pcrs...))
	if err != nil {
		t.Fatalf("swtpm quote rejected by evidence/quote: %v", err)
	}
	if _, err := quote.Verify(ak.Public, q.Attest, q.Signature, vals, quote.WithNonce([]byte("hub nonce 2"))); err == nil {
		t.Fatal("quote accepted under another nonce")
	}
	// A second quote is later in TPM time.
	q2, err := ak.Quote([]byte("hub nonce 2"), pcrs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := quote.Verify(ak.Public, q2.Attest, q2.Signature, quote.PCRValues{quote.AlgSHA256: q2.PCRs}, quote.WithNonce([]byte("hub nonce 2")), quote.WithPrevious(res.Attest.ClockInfo)); err != nil {
		t.Fatalf("second quote rejected: %v", err)
	}
	// The AK is a primary key: after a restart of the agent it is the same key.
	first, _ := x509.MarshalPKIXPublicKey(ak.Public)
	if err := ak.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := tp.CreateAK()
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	second, _ := x509.MarshalPKIXPublicKey(again.Public)
	if !bytes.Equal(first, second) {
		t.Fatal("re-created AK differs: the agent would lose its identity on restart")
	}
}
