package policysig_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ratatouille/rat/audit/policysig"
)

const (
	confDir            = "testdata/sigstore-conformance/bundle-verify"
	confDefaultSAN     = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
	confDefaultIssuer  = "https://token.actions.githubusercontent.com"
	confDefaultRootRel = "testdata/trusted-root-public-good.json"
)

func readOr(t *testing.T, path, def string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return def
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestConformance runs every sigstore-conformance bundle-verify case
// through the exact check the hub uses. Cases ending in _fail must be
// rejected; DSSE cases must be rejected as not-a-message-signature (or
// fail earlier), never crash; every other case must be accepted with the
// case's identity or key and the tlog requirement on.
func TestConformance(t *testing.T) {
	dirs, err := os.ReadDir(confDir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		n++
		name := d.Name()
		dir := filepath.Join(confDir, name)
		t.Run(name, func(t *testing.T) {
			bundleJSON, err := os.ReadFile(filepath.Join(dir, "bundle.sigstore.json"))
			if err != nil {
				t.Fatal(err)
			}
			artifactPath := filepath.Join(dir, "artifact")
			if _, err := os.Stat(artifactPath); err != nil {
				artifactPath = filepath.Join(confDir, "a.txt")
			}
			artifact, err := os.ReadFile(artifactPath)
			if err != nil {
				t.Fatal(err)
			}
			rootPath := filepath.Join(dir, "trusted_root.json")
			if _, err := os.Stat(rootPath); err != nil {
				rootPath = confDefaultRootRel
			}
			rootJSON, err := os.ReadFile(rootPath)
			if err != nil {
				t.Fatal(err)
			}
			shouldFail := strings.HasSuffix(name, "_fail")
			tr, err := policysig.ParseTrustedRoot(rootJSON)
			if err != nil {
				if shouldFail {
					return // a broken trusted root is refused before any bundle is looked at
				}
				t.Fatal(err)
			}
			var opts []policysig.Option
			if key, err := os.ReadFile(filepath.Join(dir, "key.pub")); err == nil {
				opts = append(opts, policysig.WithPublicKeyPEM(key))
			} else {
				opts = append(opts, policysig.WithIdentity(policysig.Identity{
					Issuer: readOr(t, filepath.Join(dir, "issuer"), confDefaultIssuer),
					SAN:    readOr(t, filepath.Join(dir, "identity"), confDefaultSAN),
				}))
			}
			v, err := policysig.New(tr, opts...)
			if err != nil {
				if shouldFail && errors.Is(err, policysig.ErrConfig) {
					return // e.g. a key.pub that is not a valid key
				}
				t.Fatal(err)
			}
			isDSSE := strings.Contains(string(bundleJSON), `"dsseEnvelope"`)
			res, err := v.Verify(artifact, bundleJSON)
			switch {
			case shouldFail:
				if err == nil {
					t.Fatalf("accepted a _fail case: %+v", res)
				}
				t.Logf("rejected: %v", err)
			case isDSSE:
				if !errors.Is(err, policysig.ErrNotMessageSignature) {
					t.Fatalf("DSSE case: err = %v, want ErrNotMessageSignature", err)
				}
			default:
				if err != nil {
					t.Fatalf("rejected a valid message-signature case: %v", err)
				}
				if len(res.Tlog) == 0 {
					t.Errorf("no verified tlog entry reported: %+v", res)
				}
				if res.KeySigned != (res.KeyID != "") || (!res.KeySigned && res.Identity == "") {
					t.Errorf("signer not reported: %+v", res)
				}
			}
		})
	}
	if n < 60 {
		t.Fatalf("only %d conformance cases found", n)
	}
}
