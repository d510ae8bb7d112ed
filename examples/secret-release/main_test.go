package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ratatouille/rat/evidence/failure"
	"github.com/ratatouille/rat/examples/secret-release/demo"
	"github.com/ratatouille/rat/hub/ear"
)

// TestHeaderModeAndClient runs the demo pieces `make demo` uses: the
// service in -device-header-unsafe mode against a hub's token endpoints,
// and -client: released while TRUSTED; after UNTRUSTED + revocation a token
// saved before is refused as revoked and a fresh one as not affirming.
func TestHeaderModeAndClient(t *testing.T) {
	dir := t.TempDir()
	iss, err := ear.NewIssuer(ear.FileKeyStore{Dir: filepath.Join(dir, "keys")})
	if err != nil {
		t.Fatal(err)
	}
	src := &demo.Table{}
	src.Set(demo.Trusted("edge-1"))
	const cred = "operator-credential-0123456789"
	hub := httptest.NewServer(ear.NewHandler(iss, src, func(r *http.Request) bool {
		return r.Header.Get("Authorization") == "Bearer "+cred
	}))
	defer hub.Close()
	credFile := filepath.Join(dir, "cred")
	secretFile := filepath.Join(dir, "secret")
	for p, b := range map[string]string{credFile: cred + "\n", secretFile: "the-secret"} {
		if err := os.WriteFile(p, []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := serveHeaderModeUnsafe("0.0.0.0:0", "", hub.URL, ear.DefaultIssuer, "secret-release", secretFile, false); err == nil ||
		!strings.Contains(err.Error(), "loopback only") {
		t.Fatalf("non-loopback listen: %v", err)
	}
	addrFile := filepath.Join(dir, "addr")
	go func() {
		_ = serveHeaderModeUnsafe("127.0.0.1:0", addrFile, hub.URL, ear.DefaultIssuer, "secret-release", secretFile, false)
	}()
	var svc string
	for deadline := time.Now().Add(10 * time.Second); svc == ""; {
		if b, err := os.ReadFile(addrFile); err == nil {
			svc = strings.TrimSpace(string(b))
		} else if time.Now().After(deadline) {
			t.Fatal("service did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cfg := clientConfig{Service: svc, Hub: hub.URL, Device: "edge-1", Audience: "secret-release", CredentialFile: credFile}
	run := func(c clientConfig) (int, string) {
		var out bytes.Buffer
		code := runClient(&out, c)
		return code, out.String()
	}

	if code, out := run(cfg); code != exitReleased || !strings.Contains(out, `"the-secret"`) || !strings.Contains(out, "ear.status=affirming") {
		t.Fatalf("TRUSTED: exit %d\n%s", code, out)
	}
	other := cfg
	other.Device = "edge-2" // a token for edge-1 presented as edge-2
	saved := filepath.Join(dir, "token")
	held := cfg
	held.TokenOut = saved
	if code, out := run(held); code != exitReleased || !strings.Contains(out, "affirming") {
		t.Fatalf("-token-out: exit %d\n%s", code, out)
	}
	wrong := other
	wrong.TokenIn, wrong.Hub = saved, ""
	if code, out := run(wrong); code != exitRefused || !strings.Contains(out, "another device") {
		t.Fatalf("edge-1's token as edge-2: exit %d\n%s", code, out)
	}
	// The device check comes before the nonce is consumed, so the saved
	// token can still be presented as edge-1 below.
	bad := demo.Trusted("edge-1")
	bad.Trusted, bad.State, bad.IMAVerdict = false, "UNTRUSTED", ear.IMAUnrecognized
	bad.Failures = []string{failure.IMANotInAllowlist}
	src.Set(bad)
	if err := iss.Revoke("edge-1"); err != nil {
		t.Fatal(err)
	}
	present := cfg
	present.TokenIn, present.Hub, present.CredentialFile = saved, "", ""
	if code, out := run(present); code != exitRefused || !strings.Contains(out, "revoked") {
		t.Fatalf("saved token after revocation: exit %d\n%s", code, out)
	}
	if code, out := run(cfg); code != exitRefused || !strings.Contains(out, "not affirming") || !strings.Contains(out, "ear.status=contraindicated") {
		t.Fatalf("UNTRUSTED: exit %d\n%s", code, out)
	}
	noCred := cfg
	noCred.CredentialFile = secretFile // not the hub credential
	if code, _ := run(noCred); code != exitError {
		t.Fatalf("wrong hub credential: exit %d", code)
	}
}
