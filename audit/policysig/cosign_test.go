package policysig_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/ratatouille/rat/audit/policysig"
)

// cosignPath finds cosign (.ci/run installs it in ~/go/bin). Missing
// cosign skips the test, except under RAT_REQUIRE_INTEGRATION=1.
func cosignPath(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("cosign"); err == nil {
		return p
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, "go", "bin", "cosign")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("RAT_REQUIRE_INTEGRATION") == "1" {
		t.Fatal("cosign not found (PATH, ~/go/bin) and RAT_REQUIRE_INTEGRATION=1")
	}
	t.Skip("cosign not found")
	return ""
}

func runCosign(t *testing.T, cosign, dir string, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(cosign, args...)
	cmd.Dir = dir
	// Offline: no TUF, no Rekor, no Fulcio; the password protects the
	// throwaway key made by the test.
	cmd.Env = append(os.Environ(), "COSIGN_PASSWORD=test-password", "SIGSTORE_NO_CACHE=1", "TUF_ROOT="+filepath.Join(dir, "tuf"))
	return cmd.CombinedOutput()
}

// TestCosignSignBlob signs with the real cosign CLI, offline with a key,
// and verifies with our code; tampering and a foreign key are refused.
func TestCosignSignBlob(t *testing.T) {
	cosign := cosignPath(t)
	dir := t.TempDir()
	if out, err := runCosign(t, cosign, dir, "generate-key-pair"); err != nil {
		t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
	}
	pol := filepath.Join(dir, "runtime_policy.json")
	if err := os.WriteFile(pol, policyJSON, 0o644); err != nil {
		t.Fatal(err)
	}
	bundlePath := filepath.Join(dir, "runtime_policy.json.sigstore.json")
	if out, err := runCosign(t, cosign, dir, "sign-blob", "--yes", "--key", "cosign.key", "--tlog-upload=false", "--new-bundle-format", "--bundle", bundlePath, pol); err != nil {
		t.Fatalf("cosign sign-blob: %v\n%s", err, out)
	}
	bundleJSON, err := os.ReadFile(bundlePath)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(filepath.Join(dir, "cosign.pub"))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cases := []struct {
		name    string
		opts    []policysig.Option
		policy  []byte
		wantErr error
	}{
		{name: "cosign key, key-only group", opts: []policysig.Option{policysig.WithPublicKeyPEM(pub), policysig.WithoutTlogUnsafe()}},
		{name: "tlog required by default", opts: []policysig.Option{policysig.WithPublicKeyPEM(pub)}, wantErr: policysig.ErrVerification},
		{name: "other key", opts: []policysig.Option{policysig.WithPublicKey(other.Public()), policysig.WithoutTlogUnsafe()}, wantErr: policysig.ErrVerification},
		{name: "tampered policy", opts: []policysig.Option{policysig.WithPublicKeyPEM(pub), policysig.WithoutTlogUnsafe()}, policy: bytes.Replace(policyJSON, []byte("true"), []byte("sh"), 1), wantErr: policysig.ErrVerification},
	}
	tr, err := policysig.ParseTrustedRoot(mustRead(t, confDefaultRootRel))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := policysig.New(tr, c.opts...)
			if err != nil {
				t.Fatal(err)
			}
			p := policyJSON
			if c.policy != nil {
				p = c.policy
			}
			res, err := v.Verify(p, bundleJSON)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("err = %v, want %v", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			pk, _ := cryptoutils.UnmarshalPEMToPublicKey(pub)
			if !res.KeySigned || res.KeyID != keyID(t, pk) {
				t.Fatalf("result %+v", res)
			}
		})
	}
}

// TestCosignVerifiesOurBundles: SignWithKey's bundles pass the real
// `cosign verify-blob`, and cosign refuses them for other content.
func TestCosignVerifiesOurBundles(t *testing.T) {
	cosign := cosignPath(t)
	dir := t.TempDir()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	b, err := policysig.SignWithKey(context.Background(), policyJSON, k)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := cryptoutils.MarshalPublicKeyToPEM(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	root, _ := filepath.Abs(confDefaultRootRel)
	for name, content := range map[string][]byte{"good.json": policyJSON, "bad.json": append(append([]byte{}, policyJSON...), '\n')} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "k.pub"), pubPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "b.sigstore.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		file string
		ok   bool
	}{{"good.json", true}, {"bad.json", false}} {
		out, err := runCosign(t, cosign, dir, "verify-blob", "--key", "k.pub", "--bundle", "b.sigstore.json", "--new-bundle-format", "--insecure-ignore-tlog=true", "--trusted-root", root, c.file)
		if (err == nil) != c.ok {
			t.Fatalf("cosign verify-blob %s: err=%v, want ok=%v\n%s", c.file, err, c.ok, out)
		}
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
