package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ratatouille/rat/evidence/ima"
	"github.com/ratatouille/rat/evidence/runtimepolicy"
	"github.com/ratatouille/rat/ota/rollout"
	"github.com/ratatouille/rat/ota/testimage"
)

// TestOTAPolicyCLI predicts policies from real artifacts and checks them
// against sha256sum of the source files.
func TestOTAPolicyCLI(t *testing.T) {
	src := testimage.Source(t)
	sums := testimage.Sha256Sums(t, src)
	ext4 := testimage.Ext4(t, src)
	dir := t.TempDir()
	artifacts := map[string]string{
		"rauc":   testimage.RAUCBundle(t, ext4, "rat-board", testimage.OSVersionID),
		"swu":    testimage.SWU(t, ext4, "2026.12"),
		"mender": testimage.Mender(t, ext4, "2026.12", "rat-board"),
		"ext4":   ext4,
	}
	for name, art := range artifacts {
		t.Run(name, func(t *testing.T) {
			pol := filepath.Join(dir, name+".json")
			rec := filepath.Join(dir, name+".release.json")
			var out, errb bytes.Buffer
			code := otaPolicy([]string{"--image", art, "--release", "2026.12", "--group", "edge", "--ima-policy", "exec", "--exclude", "/usr/lib/firmware/.*", "--release-out", rec, "-o", pol}, &out, &errb)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errb.String())
			}
			p, err := loadPolicy(pol)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"/usr/bin/ls", "/usr/bin/hello.sh", "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13", testimage.Layout.Modules[1]} {
				if d := p.Digests[f]; len(d) != 1 || d[0] != sums[f] {
					t.Errorf("%s: %v, sha256sum %s", f, d, sums[f])
				}
			}
			for _, f := range []string{"/etc/motd", testimage.Layout.Firmware[0]} {
				if _, ok := p.Digests[f]; ok {
					t.Errorf("%s should not be in the exec policy with firmware excluded", f)
				}
			}
			var r rollout.Release
			b, err := os.ReadFile(rec)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			polBytes, _ := os.ReadFile(pol)
			if r.Group != "edge" || r.Version != "2026.12" || r.State != rollout.Draft || r.PolicyDigest != otaSHA256Hex(polBytes) || r.ImageDigest != otaSHA256Hex(otaReadFile(t, art)) {
				t.Errorf("release record %+v", r)
			}
			if !strings.Contains(errb.String(), "policy digest sha256:"+r.PolicyDigest) || !strings.Contains(errb.String(), `os-release matches: devices report "2026.12"`) {
				t.Errorf("summary %q", errb.String())
			}
		})
	}
	t.Run("release differs from os-release", func(t *testing.T) {
		var out, errb bytes.Buffer
		if code := otaPolicy([]string{"--image", ext4, "--release", "7.0", "--group", "edge", "-o", filepath.Join(dir, "w.json")}, &out, &errb); code != 0 {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
		if want := `report VERSION_ID="2026.12" IMAGE_VERSION="2026.12.1" from os-release, not release "7.0"`; !strings.Contains(errb.String(), want) {
			t.Errorf("no os-release warning in %q", errb.String())
		}
	})
	t.Run("base policy", func(t *testing.T) {
		base := writeDiffPolicy(t, dir, "base.json", map[string][]string{"/opt/vendor/agent": {strings.Repeat("ab", 32)}})
		out := filepath.Join(dir, "based.json")
		var stdout, errb bytes.Buffer
		if code := otaPolicy([]string{"--image", ext4, "--release", testimage.OSVersionID, "--group", "edge", "--ima-policy", "exec", "--base", base, "-o", out}, &stdout, &errb); code != 0 {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
		p, err := loadPolicy(out)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Digests["/opt/vendor/agent"]) != 1 || len(p.Digests["/usr/bin/ls"]) != 1 || p.Digests["/usr/bin/ls"][0] != sums["/usr/bin/ls"] {
			t.Fatalf("merged policy lacks base or image entries")
		}
	})
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"missing group", []string{"--image", ext4, "--release", "1", "-o", filepath.Join(dir, "x.json")}},
		{"version mismatch", []string{"--image", artifacts["rauc"], "--release", "2027.01", "--group", "g", "-o", filepath.Join(dir, "x.json")}},
		{"bad ima policy", []string{"--image", ext4, "--release", "1", "--group", "g", "--ima-policy", "all", "-o", filepath.Join(dir, "x.json")}},
		{"bad hash", []string{"--image", ext4, "--release", "1", "--group", "g", "--hash-alg", "md5", "-o", filepath.Join(dir, "x.json")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := otaPolicy(tc.args, &out, &errb); code != 2 {
				t.Fatalf("exit %d, want 2: %s", code, errb.String())
			}
		})
	}
}

// TestPredictionVersusBaseline: a baseline made by rat policy create from
// the IMA log a device booted from the image would write, plus one file
// installed outside the OTA image; policy diff names that file as the
// false alarm the prediction would raise.
func TestPredictionVersusBaseline(t *testing.T) {
	src := testimage.Source(t)
	sums := testimage.Sha256Sums(t, src)
	dir := t.TempDir()
	pred := filepath.Join(dir, "pred.json")
	var out, errb bytes.Buffer
	if code := otaPolicy([]string{"--image", testimage.Squashfs(t, src, "gzip"), "--release", "1", "--group", "g", "--ima-policy", "exec", "-o", pred}, &out, &errb); code != 0 {
		t.Fatalf("predict: %s", errb.String())
	}
	var log []ima.Entry
	add := func(path, hexDigest string) {
		d, _ := hex.DecodeString(hexDigest)
		e, err := ima.NewNgEntry(10, "sha256", d, path)
		if err != nil {
			t.Fatal(err)
		}
		log = append(log, e)
	}
	for _, p := range []string{"/usr/bin/ls", "/usr/bin/cat", "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13", "/usr/bin/hello.sh"} {
		add(p, sums[p])
	}
	add("/opt/vendor/agent", strings.Repeat("ab", 32)) // installed outside the release image
	logPath := filepath.Join(dir, "binary_runtime_measurements")
	if err := os.WriteFile(logPath, ima.MarshalBinary(log), 0o600); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, "baseline.json")
	if code := policyCreate([]string{"--ima-log", logPath, "-o", base}, &out, &errb); code != 0 {
		t.Fatalf("baseline: %s", errb.String())
	}
	out.Reset()
	if code := policyDiff([]string{pred, base}, &out, &errb); code != 1 {
		t.Fatalf("diff exit %d: %s %s", code, out.String(), errb.String())
	}
	text := out.String()
	for _, want := range []string{"B has, A lacks: 1 path(s)", "/opt/vendor/agent  (path not in A at all)", "different: 1 false-alarm path(s)"} {
		if !strings.Contains(text, want) {
			t.Errorf("diff output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "/usr/bin/ls  (") && strings.Index(text, "/usr/bin/ls  (") < strings.Index(text, "A has, B lacks") {
		t.Errorf("/usr/bin/ls reported missing from the prediction:\n%s", text)
	}
	// The prediction judges the device log: only the extra file fails.
	p, err := loadPolicy(pred)
	if err != nil {
		t.Fatal(err)
	}
	evs := runtimepolicy.Evaluate(p, log)
	if len(evs) != 1 || !strings.Contains(evs[0].String(), "/opt/vendor/agent") {
		t.Fatalf("events %v", evs)
	}
}

func otaReadFile(t *testing.T, p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
