//go:build e2e

package e2e

import (
	"debug/elf"
	"fmt"
	"github.com/ratatouille/rat/test/harness"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// virtioModules are the modules (in load order) the guest needs for
// virtio-serial: Debian builds virtio and virtio_console as modules.
var virtioModules = []string{"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci", "virtio_console"}

func requireFile(t *testing.T, candidates ...string) string {
	t.Helper()
	for _, c := range candidates {
		if _, err := os.Stat(c); err == nil {
			return c
		}
	}
	harness.Missing(t, "e2e: none of %v exists", candidates)
	return ""
}

// repoRoot is the repository's top directory (the test runs in test/e2e).
func repoRoot(t *testing.T) string {
	t.Helper()
	r, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// staticELF reports whether path is an ELF executable without an
// interpreter: the guest has no libc.
func staticELF(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked", path)
		}
	}
	return nil
}

// kernel is a Debian kernel image and the modules the guest loads.
type kernel struct {
	vmlinuz string
	modules map[string]string
}

var debName = regexp.MustCompile(`^linux-image-[0-9.]+-[0-9]+-amd64_.*_amd64\.deb$`)

// fetchKernel returns a Debian amd64 kernel, downloading its package with
// apt-get into the cache (never installing it) on first use, and extracting
// only vmlinuz and the virtio modules.
func fetchKernel(t *testing.T, cache string) kernel {
	t.Helper()
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	deb := cachedDeb(cache)
	if deb == "" {
		harness.RequireTool(t, "apt-get")
		var err error
		if deb, err = downloadKernel(cache); err != nil && os.Geteuid() == 0 {
			// Stale or missing package lists (a fresh CI image).
			t.Logf("kernel download: %v; running apt-get update", err)
			if out, uerr := exec.Command("apt-get", "update", "-qq").CombinedOutput(); uerr != nil {
				t.Logf("apt-get update: %v\n%s", uerr, out)
			}
			deb, err = downloadKernel(cache)
		}
		if err != nil {
			harness.Missing(t, "e2e: kernel: %v", err)
		}
	}
	dir := strings.TrimSuffix(deb, ".deb")
	stamp := filepath.Join(dir, ".extracted")
	if _, err := os.Stat(stamp); err != nil {
		harness.RequireTool(t, "dpkg-deb")
		_ = os.RemoveAll(dir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		pats := []string{"./boot/vmlinuz-*"}
		for _, m := range virtioModules {
			pats = append(pats, "*/"+m+".ko")
		}
		shArgs := append([]string{"-c", `deb=$0 dir=$1; shift; dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dir" --wildcards "$@"`, deb, dir}, pats...)
		cmd := exec.Command("sh", shArgs...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("extract %s: %v\n%s", deb, err, out)
		}
		if err := os.WriteFile(stamp, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	k := kernel{modules: map[string]string{}}
	vm, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(vm) != 1 {
		t.Fatalf("%s: want one vmlinuz, have %v", dir, vm)
	}
	k.vmlinuz = vm[0]
	err := filepath.Walk(filepath.Join(dir, "lib"), func(p string, info os.FileInfo, err error) error {
		if err == nil && strings.HasSuffix(p, ".ko") {
			k.modules[strings.TrimSuffix(filepath.Base(p), ".ko")] = p
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range virtioModules {
		if k.modules[m] == "" {
			t.Fatalf("kernel package %s has no %s.ko", deb, m)
		}
	}
	return k
}

// downloadKernel fetches the package linux-image-amd64 depends on (or
// RAT_E2E_KERNEL_PKG) into cache with apt-get download.
func downloadKernel(cache string) (string, error) {
	pkg := os.Getenv("RAT_E2E_KERNEL_PKG")
	if pkg == "" {
		out, err := exec.Command("apt-cache", "depends", "linux-image-amd64").CombinedOutput()
		m := regexp.MustCompile(`Depends: (linux-image-[0-9.]+-[0-9]+-amd64)\b`).FindSubmatch(out)
		if err != nil || m == nil {
			return "", fmt.Errorf("cannot resolve the kernel package of linux-image-amd64 (%v): %s", err, out)
		}
		pkg = string(m[1])
	}
	cmd := exec.Command("apt-get", "download", pkg)
	cmd.Dir = cache
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get download %s: %w\n%s", pkg, err, out)
	}
	deb := cachedDeb(cache)
	if deb == "" {
		return "", fmt.Errorf("apt-get download %s left no package in %s", pkg, cache)
	}
	return deb, nil
}

func cachedDeb(cache string) string {
	es, _ := os.ReadDir(cache)
	for i := len(es) - 1; i >= 0; i-- {
		if debName.MatchString(es[i].Name()) {
			return filepath.Join(cache, es[i].Name())
		}
	}
	return ""
}

// manufactureTPM makes a CA of the test's own (swtpm_localca) and a
// pristine swtpm state with RSA and ECC EK certificates and a platform
// certificate issued by it, fully offline. It returns the state directory
// and a directory holding the CA's root certificate (the hub's EK roots).
func manufactureTPM(t *testing.T, dir string) (state, roots string) {
	t.Helper()
	setup := harness.RequireTool(t, "swtpm_setup")
	localca := harness.RequireTool(t, "swtpm_localca")
	ca, state, roots := filepath.Join(dir, "ca"), filepath.Join(dir, "tpm"), filepath.Join(dir, "ek-roots")
	for _, d := range []string{ca, state, roots} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"localca.conf":    fmt.Sprintf("statedir = %[1]s\nsigningkey = %[1]s/signkey.pem\nissuercert = %[1]s/issuercert.pem\ncertserial = %[1]s/certserial\n", ca),
		"localca.options": "--platform-manufacturer Ratatouille\n--platform-version 2.1\n--platform-model e2e\n",
	}
	files["swtpm_setup.conf"] = fmt.Sprintf("create_certs_tool = %s\ncreate_certs_tool_config = %s\ncreate_certs_tool_options = %s\n",
		localca, filepath.Join(dir, "localca.conf"), filepath.Join(dir, "localca.options"))
	for n, s := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(setup, "--tpm2", "--tpmstate", state, "--create-ek-cert", "--create-platform-cert",
		"--pcr-banks", "sha1,sha256", "--config", filepath.Join(dir, "swtpm_setup.conf"), "--overwrite")
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+dir, "HOME="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("swtpm_setup: %v\n%s", err, out)
	}
	// The EK certificates are issued by swtpm_localca's intermediate
	// (issuercert.pem), and the TPM's NV holds no intermediates: the hub's
	// anchors are the local CA's root and that intermediate.
	for _, n := range []string{"swtpm-localca-rootca-cert.pem", "issuercert.pem"} {
		b, err := os.ReadFile(filepath.Join(ca, n))
		if err != nil {
			t.Fatalf("swtpm_localca made no %s: %v", n, err)
		}
		if err := os.WriteFile(filepath.Join(roots, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return state, roots
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
