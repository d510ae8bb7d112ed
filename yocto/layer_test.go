package yocto

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ratatouille/rat/yocto/gomods"
	"github.com/ratatouille/rat/yocto/imapolicy"
)

const (
	layer     = "meta-ratatouille"
	agentDir  = layer + "/recipes-security/rat-agent"
	agentBB   = agentDir + "/rat-agent_git.bb"
	unitFile  = agentDir + "/files/rat-agent.service"
	confFile  = agentDir + "/files/rat-agent.conf"
	policyDir = layer + "/recipes-security/ima-policy-ratatouille"
	policy    = policyDir + "/files/ima-policy"
	deviceDir = "../device"
	execStart = "/usr/bin/rat-agent run --config /etc/rat-agent/rat-agent.conf --state /var/lib/rat-agent"
	staleHint = "commit device/go.sum, then run make yocto-mods and commit its output"
)

// The releases whose bitbake has the gomod:// fetcher (2.10 and later).
// scarthgap (bitbake 2.8) must not be claimed: it fails to parse the recipe.
var releases = []string{"styhead", "walnascar", "whinlatter", "wrynose"}

// Go of each release's openembedded-core (go_*.bb): walnascar is the
// oldest release that builds the agent, so device/go.mod must not need more.
const oldestBuildingGo = "1.24"

func requireIntegration(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("RAT_REQUIRE_INTEGRATION") == "1" {
		t.Fatalf(format+" (RAT_REQUIRE_INTEGRATION=1)", args...)
	}
	t.Skipf(format, args...)
}

func TestLayerConf(t *testing.T) {
	f := readBB(t, layer+"/conf/layer.conf")
	if got := f.All("BBFILE_COLLECTIONS"); got != "ratatouille" {
		t.Errorf("BBFILE_COLLECTIONS += %q, want ratatouille", got)
	}
	if got, _ := f.Get("BBFILE_PATTERN_ratatouille"); got != "^${LAYERDIR}/" {
		t.Errorf("BBFILE_PATTERN_ratatouille = %q", got)
	}
	if got, _ := f.Get("BBFILE_PRIORITY_ratatouille"); got == "" || strings.Trim(got, "0123456789") != "" {
		t.Errorf("BBFILE_PRIORITY_ratatouille = %q, want a number", got)
	}
	if got, _ := f.Get("LAYERDEPENDS_ratatouille"); !slices.Contains(strings.Fields(got), "core") {
		t.Errorf("LAYERDEPENDS_ratatouille = %q, want core", got)
	}
	compat, _ := f.Get("LAYERSERIES_COMPAT_ratatouille")
	if got := strings.Fields(compat); !slices.Equal(got, releases) {
		t.Errorf("LAYERSERIES_COMPAT_ratatouille = %q, want %q", got, releases)
	}

	// Every recipe of the layer is found by BBFILES, and every dynamic
	// layer entry names a real collection and matches files.
	globs := strings.Fields(f.All("BBFILES"))
	recipes, _ := filepath.Glob(layer + "/recipes-*/*/*.bb*")
	if len(recipes) < 3 {
		t.Fatalf("recipes: %v", recipes)
	}
	for _, r := range recipes {
		if !matchesAny(t, globs, r) {
			t.Errorf("%s is not matched by BBFILES %v", r, globs)
		}
	}
	dyn := strings.Fields(f.All("BBFILES_DYNAMIC"))
	seen := map[string]bool{}
	for _, d := range dyn {
		coll, glob, ok := strings.Cut(d, ":")
		if !ok || (coll != "integrity" && coll != "tpm-layer") {
			t.Errorf("BBFILES_DYNAMIC entry %q: want integrity: or tpm-layer:", d)
			continue
		}
		files, _ := filepath.Glob(strings.Replace(glob, "${LAYERDIR}", layer, 1))
		for _, f := range files {
			seen[f] = true
		}
	}
	all, _ := filepath.Glob(layer + "/dynamic-layers/*/*/*/*.bb*")
	if len(all) == 0 {
		t.Error("no dynamic-layer files")
	}
	for _, f := range all {
		if !seen[f] {
			t.Errorf("%s is under dynamic-layers/ but no BBFILES_DYNAMIC entry matches it", f)
		}
	}
}

func matchesAny(t *testing.T, globs []string, path string) bool {
	for _, g := range globs {
		ok, err := filepath.Match(strings.Replace(g, "${LAYERDIR}", layer, 1), path)
		if err != nil {
			t.Fatalf("BBFILES %q: %v", g, err)
		}
		if ok {
			return true
		}
	}
	return false
}

func moduleLine(t *testing.T, gomod, directive string) string {
	t.Helper()
	data, err := os.ReadFile(gomod)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, directive+" "); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("%s: no %s directive", gomod, directive)
	return ""
}

func goMinor(t *testing.T, v string) (int, int) {
	t.Helper()
	parts := strings.Split(v, ".")
	if len(parts) < 2 {
		t.Fatalf("Go version %q", v)
	}
	a, err1 := strconv.Atoi(parts[0])
	b, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		t.Fatalf("Go version %q", v)
	}
	return a, b
}

func TestAgentRecipe(t *testing.T) {
	f := readBB(t, agentBB)
	for _, c := range []string{"go-mod", "systemd"} {
		if !slices.Contains(f.Inherits, c) {
			t.Errorf("rat-agent does not inherit %s (inherits %v)", c, f.Inherits)
		}
	}
	for _, inc := range []string{"${BPN}-go-mods.inc", "${BPN}-licenses.inc"} {
		if !slices.Contains(f.Requires, inc) {
			t.Errorf("rat-agent does not require %s", inc)
		}
	}
	root := moduleLine(t, "../go.mod", "module")
	dev := moduleLine(t, deviceDir+"/go.mod", "module")
	want := map[string]string{
		"GO_IMPORT":   root,
		"GO_WORKDIR":  "${GO_IMPORT}" + strings.TrimPrefix(dev, root),
		"GO_INSTALL":  "${GO_IMPORT}" + strings.TrimPrefix(dev, root) + "/cmd/rat-agent",
		"CGO_ENABLED": "0",
		"GOPROXY":     "off",
		"GOTOOLCHAIN": "local",
	}
	for name, w := range want {
		if got, _ := f.Get(name); got != w {
			t.Errorf("%s = %q, want %q", name, got, w)
		}
	}
	for _, name := range []string{"CGO_ENABLED", "GOPROXY", "GOTOOLCHAIN"} {
		if a := f.Vars[name]; len(a) == 0 || !a[0].Export {
			t.Errorf("%s is not exported", name)
		}
	}
	for _, name := range []string{"SUMMARY", "LICENSE", "HOMEPAGE", "PV"} {
		if v, _ := f.Get(name); v == "" {
			t.Errorf("%s is not set", name)
		}
	}
	if got, _ := f.Get("SYSTEMD_SERVICE:${PN}"); got != "rat-agent.service" {
		t.Errorf("SYSTEMD_SERVICE:${PN} = %q", got)
	}

	srcrev, _ := f.Get("SRCREV")
	if !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(srcrev) {
		t.Errorf("SRCREV = %q, want a fixed 40-hex commit (never AUTOREV)", srcrev)
	}
	srcURI := strings.Fields(f.All("SRC_URI"))
	if len(srcURI) == 0 || !strings.HasPrefix(srcURI[0], "git://") ||
		!strings.Contains(srcURI[0], ";destsuffix=${GO_SRCURI_DESTSUFFIX}") || !strings.Contains(srcURI[0], ";branch=") {
		t.Errorf("SRC_URI[0] = %q, want git:// with branch= and destsuffix=${GO_SRCURI_DESTSUFFIX}", srcURI)
	}
	for _, u := range srcURI[1:] {
		name, ok := strings.CutPrefix(u, "file://")
		if !ok {
			t.Errorf("SRC_URI entry %q", u)
			continue
		}
		if _, err := os.Stat(filepath.Join(agentDir, "files", name)); err != nil {
			t.Errorf("SRC_URI %s: %v", u, err)
		}
	}

	// GOTOOLCHAIN=local: the release's Go must be at least device/go.mod's.
	minGo, _ := f.Get("RAT_AGENT_GO_MIN")
	modGo := moduleLine(t, deviceDir+"/go.mod", "go")
	ma, mb := goMinor(t, modGo)
	ra, rb := goMinor(t, minGo)
	if ma != ra || mb != rb {
		t.Errorf("RAT_AGENT_GO_MIN = %q, device/go.mod says go %s (%s)", minGo, modGo, staleHint)
	}
	oa, ob := goMinor(t, oldestBuildingGo)
	if ma > oa || ma == oa && mb > ob {
		t.Errorf("device/go.mod needs go %s; walnascar ships Go %s.x and builds with GOTOOLCHAIN=local", modGo, oldestBuildingGo)
	}
	if tc := optionalLine(deviceDir+"/go.mod", "toolchain"); tc != "" {
		t.Errorf("device/go.mod has toolchain %s: the Yocto build cannot download toolchains", tc)
	}
}

func optionalLine(path, directive string) string {
	data, _ := os.ReadFile(path)
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, directive+" "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// incEntries reads the gomod:// lines of the committed include.
func incEntries(t *testing.T) map[string]string {
	t.Helper()
	f := readBB(t, agentDir+"/rat-agent-go-mods.inc")
	out := map[string]string{}
	for _, u := range strings.Fields(f.All("SRC_URI")) {
		rest, ok := strings.CutPrefix(u, "gomod://")
		if !ok {
			t.Fatalf("rat-agent-go-mods.inc: %q is not gomod://", u)
		}
		parts := strings.Split(rest, ";")
		key := parts[0]
		var kind, sum string
		for _, p := range parts[1:] {
			switch {
			case strings.HasPrefix(p, "version="):
				key += "@" + strings.TrimPrefix(p, "version=")
			case p == "mod=1":
				kind = "mod"
			case strings.HasPrefix(p, "sha256sum="):
				sum = strings.TrimPrefix(p, "sha256sum=")
			default:
				t.Fatalf("rat-agent-go-mods.inc: %q: unknown parameter %q", u, p)
			}
		}
		if kind == "" {
			kind = "zip"
		}
		if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(sum) {
			t.Errorf("%s: sha256sum %q", u, sum)
		}
		if _, dup := out[key]; dup {
			t.Errorf("rat-agent-go-mods.inc lists %s twice", key)
		}
		out[key] = kind
	}
	return out
}

// The include lists exactly the modules device/go.sum pins (checked without
// network), and regenerating both includes from the module cache gives the
// committed bytes.
func TestGoModsMatchGoSum(t *testing.T) {
	data, err := os.ReadFile(deviceDir + "/go.sum")
	if err != nil {
		t.Fatal(err)
	}
	sums, err := gomods.ParseGoSum(data)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, m := range gomods.Modules(sums) {
		want[m.Key()] = map[bool]string{true: "zip", false: "mod"}[m.NeedsZip()]
	}
	have := incEntries(t)
	var diff []string
	for k, v := range want {
		if have[k] != v {
			diff = append(diff, "device/go.sum has "+k+" ("+v+"), the include has "+orNone(have[k]))
		}
	}
	for k := range have {
		if _, ok := want[k]; !ok {
			diff = append(diff, "the include has "+k+", device/go.sum does not")
		}
	}
	sort.Strings(diff)
	if len(diff) > 0 {
		t.Fatalf("rat-agent-go-mods.inc does not match device/go.sum (%s):\n%s", staleHint, strings.Join(diff, "\n"))
	}

	if _, err := exec.LookPath("go"); err != nil {
		requireIntegration(t, "go command not found: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := gomods.Generate(ctx, gomods.Options{
		ModuleDir: deviceDir,
		Packages:  gomods.AgentPackages(deviceDir, "./cmd/rat-agent"),
	})
	if err != nil {
		if strings.Contains(err.Error(), "go mod download") {
			requireIntegration(t, "module download failed: %v", err)
		}
		t.Fatal(err)
	}
	for name, gen := range map[string][]byte{"rat-agent-go-mods.inc": res.GoMods, "rat-agent-licenses.inc": res.LicInc} {
		disk, err := os.ReadFile(filepath.Join(agentDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(disk, gen) {
			t.Errorf("%s differs from what device/go.sum and the module zips give (%s)", name, staleHint)
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "nothing"
	}
	return s
}

// The recipe builds SRCREV: its device/go.sum must be the one the includes
// were made from, and once the agent's package exists it must be in SRCREV.
func TestSRCREVMatchesGoSum(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		requireIntegration(t, "git not found: %v", err)
	}
	f := readBB(t, agentBB)
	srcrev, _ := f.Get("SRCREV")
	if err := exec.Command("git", "cat-file", "-e", srcrev+"^{commit}").Run(); err != nil {
		t.Skipf("SRCREV %s is not in this clone (shallow?): %v", srcrev, err)
	}
	old, err := exec.Command("git", "show", srcrev+":device/go.sum").Output()
	if err != nil {
		t.Fatalf("git show %s:device/go.sum: %v", srcrev, err)
	}
	now, err := os.ReadFile(deviceDir + "/go.sum")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(old, now) {
		t.Errorf("device/go.sum at SRCREV %s differs from the working tree's (%s)", srcrev[:12], staleHint)
	}
	if st, err := os.Stat(deviceDir + "/cmd/rat-agent"); err == nil && st.IsDir() {
		if err := exec.Command("git", "cat-file", "-e", srcrev+":device/cmd/rat-agent").Run(); err != nil {
			t.Errorf("device/cmd/rat-agent exists but not at SRCREV %s: the recipe would build nothing (%s)", srcrev[:12], staleHint)
		}
	}
}

func unitDirectives(t *testing.T) map[string][]string {
	t.Helper()
	data, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' || l[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("unit line %q", l)
		}
		out[k] = append(out[k], v)
	}
	return out
}

func TestUnitHardening(t *testing.T) {
	d := unitDirectives(t)
	want := map[string]string{
		"ExecStart":             execStart,
		"ProtectSystem":         "strict",
		"NoNewPrivileges":       "yes",
		"DevicePolicy":          "closed",
		"DeviceAllow":           "/dev/tpmrm0 rw",
		"StateDirectory":        "rat-agent",
		"ReadWritePaths":        "/var/lib/rat-agent",
		"PrivateTmp":            "yes",
		"ProtectHome":           "yes",
		"CapabilityBoundingSet": "",
		"RestrictSUIDSGID":      "yes",
	}
	for k, v := range want {
		if got := d[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s=%q, want %s=%s", k, got, k, v)
		}
	}
	// The agent reads the IMA log and count in securityfs and talks to
	// /dev/tpmrm0: nothing may hide either.
	if v := d["PrivateDevices"]; len(v) > 0 && v[0] != "no" {
		t.Errorf("PrivateDevices=%s would hide /dev/tpmrm0", v[0])
	}
	for _, k := range []string{"InaccessiblePaths", "TemporaryFileSystem", "ProcSubset"} {
		for _, v := range d[k] {
			if strings.Contains(v, "/sys") || k == "ProcSubset" {
				t.Errorf("%s=%s hides what the agent reads", k, v)
			}
		}
	}
}

// systemd-analyze verify in a root holding the unit, the host's system units
// and an executable at /usr/bin/rat-agent; any complaint about the unit
// fails (systemd-analyze exits 0 on unknown keys and bad values).
func TestUnitVerifies(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		requireIntegration(t, "systemd-analyze not found (Debian package systemd): %v", err)
	}
	var units string
	for _, d := range []string{"/usr/lib/systemd/system", "/lib/systemd/system"} {
		if _, err := os.Stat(filepath.Join(d, "multi-user.target")); err == nil {
			units = d
			break
		}
	}
	if units == "" {
		requireIntegration(t, "no systemd system units on this host")
	}
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "usr/lib/systemd"), 0o755))
	must(exec.Command("cp", "-a", units, filepath.Join(root, "usr/lib/systemd/system")).Run())
	must(os.MkdirAll(filepath.Join(root, "etc/systemd/system"), 0o755))
	must(os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755))
	must(os.WriteFile(filepath.Join(root, "usr/bin/rat-agent"), []byte("#!/bin/sh\nexit 0\n"), 0o755))
	unit, err := os.ReadFile(unitFile)
	must(err)
	must(os.WriteFile(filepath.Join(root, "etc/systemd/system/rat-agent.service"), unit, 0o644))

	check := func(root string) (string, error) {
		cmd := exec.Command(sa, "verify", "--root="+root, "rat-agent.service")
		cmd.Env = append(os.Environ(), "SYSTEMD_LOG_LEVEL=notice", "SYSTEMD_LOG_COLOR=0")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := check(root)
	if err != nil || strings.Contains(out, "rat-agent") {
		t.Fatalf("systemd-analyze verify rat-agent.service: %v\n%s", err, out)
	}
	// The check can fail: a unit with an unknown key is reported.
	must(os.WriteFile(filepath.Join(root, "etc/systemd/system/rat-agent.service"), append(unit, []byte("\n[Service]\nProtectSystm=strict\n")...), 0o644))
	if out, _ := check(root); !strings.Contains(out, "ProtectSystm") {
		t.Errorf("systemd-analyze did not report an unknown key; its output:\n%s", out)
	}
}

// The shipped configuration is all comments, names every key the unit's
// agent needs, and uses key = value lines.
func TestConfigExample(t *testing.T) {
	data, err := os.ReadFile(confFile)
	if err != nil {
		t.Fatal(err)
	}
	keyLine := regexp.MustCompile(`^#\s*([a-z][a-z0-9-]*) = (\S.*)$`)
	keys := map[string]bool{}
	for i, l := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		if !strings.HasPrefix(l, "#") {
			t.Errorf("rat-agent.conf line %d is active (%q): the example must not configure a device", i+1, l)
		}
		if m := keyLine.FindStringSubmatch(l); m != nil {
			keys[m[1]] = true
		}
	}
	for _, k := range []string{"hub", "device-id", "fleet", "group", "tpm", "ca", "cert", "key"} {
		if !keys[k] {
			t.Errorf("rat-agent.conf has no commented %q = ... example", k)
		}
	}
	// Each key is one of the agent's flags, as `rat-agent run -h` lists them.
	if flags := agentFlags(t); flags != nil {
		for k := range keys {
			if !flags[k] {
				t.Errorf("rat-agent.conf key %q is not a flag of rat-agent run", k)
			}
		}
	}
	bb, err := os.ReadFile(agentBB)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(bb), "${D}${sysconfdir}/rat-agent/rat-agent.conf") || !strings.Contains(execStart, "/etc/rat-agent/rat-agent.conf") {
		t.Error("the recipe does not install the configuration where ExecStart reads it")
	}
}

func TestIMAPolicy(t *testing.T) {
	data, err := os.ReadFile(policy)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := imapolicy.Parse(data)
	if err != nil {
		t.Fatalf("%s does not parse under the kernel's grammar: %v", policy, err)
	}
	index := func(action, fn, fsmagic string) int {
		for i, r := range rules {
			f, _ := r.Get("func")
			m, _ := r.Get("fsmagic")
			if r.Action == action && f.Value == fn && m.Value == fsmagic {
				return i
			}
		}
		return -1
	}
	// Every measurement uses ima-ng (what evidence/ima and Keylime replay)
	// and the default PCR 10; nothing is measured on read (exec-only, so
	// `rat ota policy` can predict it from a root file system).
	for _, r := range rules {
		if r.Action != "measure" {
			continue
		}
		if tpl, _ := r.Get("template"); tpl.Value != "ima-ng" {
			t.Errorf("line %d: %s: want template=ima-ng", r.Line, r)
		}
		if pcr, ok := r.Get("pcr"); ok && pcr.Value != "10" {
			t.Errorf("line %d: %s: measurements belong in PCR 10", r.Line, r)
		}
		f, _ := r.Get("func")
		if !slices.Contains([]string{"BPRM_CHECK", "MMAP_CHECK", "FILE_MMAP", "MODULE_CHECK", "FIRMWARE_CHECK"}, f.Value) {
			t.Errorf("line %d: %s: only exec, exec-mmap, module and firmware are measured", r.Line, r)
		}
		if f.Value == "MMAP_CHECK" || f.Value == "FILE_MMAP" {
			if m, _ := r.Get("mask"); m.Value != "MAY_EXEC" {
				t.Errorf("line %d: %s: mmap rules need mask=MAY_EXEC", r.Line, r)
			}
		}
	}
	for _, fn := range []string{"BPRM_CHECK", "MMAP_CHECK", "MODULE_CHECK", "FIRMWARE_CHECK"} {
		if index("measure", fn, "") < 0 {
			t.Errorf("no unconditional measure func=%s rule", fn)
		}
	}
	magics := map[string]string{
		"proc": "0x9fa0", "sysfs": "0x62656572", "debugfs": "0x64626720", "tmpfs": "0x01021994",
		"ramfs": "0x858458f6", "securityfs": "0x73636673", "devpts": "0x1cd1", "cgroup": "0x27e0eb",
		"cgroup2": "0x63677270", "selinuxfs": "0xf97cff8c", "binfmt_misc": "0x42494e4d",
		"efivarfs": "0xde5e81e4", "nsfs": "0x6e736673",
	}
	for name, m := range magics {
		dm := index("dont_measure", "", m)
		if dm < 0 {
			t.Errorf("no dont_measure fsmagic=%s (%s)", m, name)
			continue
		}
		if gen := index("measure", "BPRM_CHECK", ""); gen >= 0 && gen < dm {
			t.Errorf("dont_measure %s (%s) comes after the general exec rule: the first match wins", m, name)
		}
	}
	// Programs run from tmpfs and ramfs are measured: their exec rules
	// come before the dont_measure rules of those file systems.
	for _, m := range []string{"0x01021994", "0x858458f6"} {
		for _, fn := range []string{"BPRM_CHECK", "MMAP_CHECK"} {
			if i, dm := index("measure", fn, m), index("dont_measure", "", m); i < 0 || i > dm {
				t.Errorf("measure func=%s fsmagic=%s must come before dont_measure fsmagic=%s", fn, m, m)
			}
		}
	}
	bb, err := os.ReadFile(policyDir + "/ima-policy-ratatouille_1.0.bb")
	if err != nil {
		t.Fatal(err)
	}
	// systemd's PID 1 and meta-integrity's initramfs load this path.
	if !strings.Contains(string(bb), "${D}${sysconfdir}/ima/ima-policy") {
		t.Error("ima-policy-ratatouille does not install /etc/ima/ima-policy")
	}
}

func TestKernelFragment(t *testing.T) {
	data, err := os.ReadFile(layer + "/recipes-kernel/linux/files/ratatouille-ima-tpm.cfg")
	if err != nil {
		t.Fatal(err)
	}
	cfg := map[string]string{}
	for _, l := range strings.Split(string(data), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok || !strings.HasPrefix(k, "CONFIG_") {
			t.Fatalf("fragment line %q", l)
		}
		if v == "m" {
			t.Errorf("%s=m: built in, or IMA starts before the TPM driver", k)
		}
		cfg[k] = v
	}
	for k, v := range map[string]string{
		"CONFIG_IMA": "y", "CONFIG_IMA_MEASURE_PCR_IDX": "10", "CONFIG_IMA_DEFAULT_HASH_SHA256": "y",
		"CONFIG_IMA_NG_TEMPLATE": "y", "CONFIG_IMA_DEFAULT_TEMPLATE": `"ima-ng"`, "CONFIG_CRYPTO_SHA256": "y",
		"CONFIG_TCG_TPM": "y", "CONFIG_TCG_TIS": "y", "CONFIG_TCG_CRB": "y", "CONFIG_TCG_TIS_SPI": "y",
		"CONFIG_SECURITYFS": "y",
	} {
		if cfg[k] != v {
			t.Errorf("%s=%q, want %s", k, cfg[k], v)
		}
	}
	app := readBB(t, layer+"/recipes-kernel/linux/linux-yocto_%.bbappend")
	if !strings.Contains(app.All("SRC_URI:append"), "file://ratatouille-ima-tpm.cfg") {
		t.Error("linux-yocto bbappend does not add the fragment")
	}
	if !strings.Contains(app.All("SRC_URI:append"), "bb.utils.contains('DISTRO_FEATURES', 'ratatouille'") {
		t.Error("the fragment must depend on DISTRO_FEATURES ratatouille, so adding the layer changes no kernel")
	}
}

func TestImageClass(t *testing.T) {
	f := readBB(t, layer+"/classes/ratatouille-image.bbclass")
	pkgs := strings.Fields(f.All("IMAGE_INSTALL:append"))
	for _, p := range []string{"rat-agent", "ima-policy-ratatouille"} {
		if !slices.Contains(pkgs, p) {
			t.Errorf("ratatouille-image does not install %s", p)
		}
	}
	if _, err := os.Stat(agentBB); err != nil {
		t.Error(err)
	}
	if !slices.Contains(f.Inherits, "features_check") || !strings.Contains(f.All("REQUIRED_DISTRO_FEATURES"), "systemd") {
		t.Error("ratatouille-image must require the systemd distro feature")
	}
}

// agentFlags builds device/cmd/rat-agent the way the recipe does (no cgo)
// and reads its run flags; nil while the package does not exist.
func agentFlags(t *testing.T) map[string]bool {
	t.Helper()
	if _, err := os.Stat(deviceDir + "/cmd/rat-agent"); err != nil {
		return nil
	}
	bin := filepath.Join(t.TempDir(), "rat-agent")
	build := exec.Command("go", "build", "-o", bin, "./cmd/rat-agent")
	build.Dir = deviceDir
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/rat-agent: %v\n%s", err, out)
	}
	out, _ := exec.Command(bin, "run", "-h").CombinedOutput()
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z][a-z0-9-]*)`).FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	if len(flags) < 5 || !flags["hub"] {
		t.Fatalf("rat-agent run -h lists no flags:\n%s", out)
	}
	return flags
}
