package tpm

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/ratatouille/rat/evidence/ekcert"
	"github.com/ratatouille/rat/evidence/failure"
)

// manufactureTPM makes a swtpm state whose EK certificates are issued by a
// CA of this test's own (swtpm_setup + swtpm_localca, fully offline) and
// returns the state dir and the CA certificates (root, intermediate).
func manufactureTPM(t *testing.T) (state string, root, issuer *x509.Certificate) {
	t.Helper()
	setup := requireTool(t, "swtpm_setup")
	localca := requireTool(t, "swtpm_localca")
	dir := t.TempDir()
	ca, state := filepath.Join(dir, "ca"), filepath.Join(dir, "state")
	for _, d := range []string{ca, state} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caConf := write("swtpm-localca.conf", "statedir = "+ca+"\nsigningkey = "+ca+"/signkey.pem\nissuercert = "+ca+"/issuercert.pem\ncertserial = "+ca+"/certserial\n")
	caOpts := write("swtpm-localca.options", "--platform-manufacturer Ratatouille\n--platform-version 2.1\n--platform-model test\n")
	conf := write("swtpm_setup.conf", "create_certs_tool = "+localca+"\ncreate_certs_tool_config = "+caConf+"\ncreate_certs_tool_options = "+caOpts+"\n")
	out, err := exec.Command(setup, "--tpm2", "--tpmstate", state, "--create-ek-cert", "--pcr-banks", "sha256", "--config", conf, "--overwrite").CombinedOutput()
	if err != nil {
		t.Fatalf("swtpm_setup: %v\n%s", err, out)
	}
	load := func(p string) *x509.Certificate {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			t.Fatalf("%s: no PEM", p)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	return state, load(filepath.Join(ca, "swtpm-localca-rootca-cert.pem")), load(filepath.Join(ca, "issuercert.pem"))
}

func TestEKCertificateChain(t *testing.T) {
	state, root, issuer := manufactureTPM(t)
	tp, err := Open(startSwtpmState(t, state))
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	certs, err := tp.EKCertificates()
	if err != nil {
		t.Fatal(err)
	}
	rsaCert, ok := certs[NVIndexRSAEKCert]
	if !ok {
		t.Fatalf("no RSA EK certificate at 0x%08x (have %d)", NVIndexRSAEKCert, len(certs))
	}
	ek, err := tp.CreateEK()
	if err != nil {
		t.Fatal(err)
	}
	defer ek.Close()
	pubArea, err := tpm2.Unmarshal[tpm2.TPMTPublic](ek.PublicArea)
	if err != nil {
		t.Fatal(err)
	}
	ekPub, err := tpm2.Pub(*pubArea)
	if err != nil {
		t.Fatal(err)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	inter.AddCert(issuer)

	cert, err := ekcert.Verify(rsaCert, ekPub, roots, inter, time.Now())
	if err != nil {
		t.Fatalf("genuine EK certificate rejected: %v", err)
	}
	if !ekcert.HasEKUsage(cert) {
		t.Error("swtpm's EK certificate should carry the TCG EK EKU")
	}

	// Another manufacturer's root, the wrong EK, and a damaged certificate.
	_, otherRoot, _ := manufactureTPM(t)
	other := x509.NewCertPool()
	other.AddCert(otherRoot)
	eccCert := certs[NVIndexECCP384EKCert]
	damaged := append([]byte(nil), rsaCert...)
	damaged[len(damaged)-10] ^= 0xff
	for _, tc := range []struct {
		name  string
		der   []byte
		roots *x509.CertPool
	}{
		{"untrusted root", rsaCert, other},
		{"certificate of another EK", eccCert, roots},
		{"damaged signature", damaged, roots},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.der == nil {
				t.Fatal("swtpm_setup made no ECC P-384 EK certificate")
			}
			_, err := ekcert.Verify(tc.der, ekPub, tc.roots, inter, time.Now())
			var fe *failure.Error
			if !errors.As(err, &fe) || fe.Event.ID != failure.EKCertInvalid {
				t.Fatalf("err = %v, want %s", err, failure.EKCertInvalid)
			}
		})
	}
}
