package predict_test

import (
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ratatouille/rat/evidence/ima"
	"github.com/ratatouille/rat/evidence/runtimepolicy"
	"github.com/ratatouille/rat/ota/predict"
	"github.com/ratatouille/rat/ota/rootfs"
	"github.com/ratatouille/rat/ota/testimage"
)

var fixed = predict.WithClock(func() time.Time { return time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC) })

func predictImage(t *testing.T, img string, opts ...predict.Option) *predict.Result {
	t.Helper()
	r, err := rootfs.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	res, err := predict.Predict(r, append([]predict.Option{fixed}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestPredictAgainstSha256sum(t *testing.T) {
	src := testimage.Source(t)
	sums := testimage.Sha256Sums(t, src)
	L := testimage.Layout
	execPaths := slices.Concat(L.Executables, L.SharedObjects, L.Modules, L.Firmware, L.ExecScripts)
	notExec := slices.Concat(L.PlainScripts, L.Data)
	images := map[string]string{
		"dir":      src,
		"tar.gz":   testimage.Tar(t, src, "gzip"),
		"squashfs": testimage.Squashfs(t, src, "gzip"),
		"ext4":     testimage.Ext4(t, src),
	}
	for name, img := range images {
		t.Run(name+"/tcb", func(t *testing.T) {
			res := predictImage(t, img)
			for p, d := range sums {
				if got := res.Policy.Digests[p]; len(got) != 1 || got[0] != d {
					t.Errorf("%s: policy has %v, sha256sum %s", p, got, d)
				}
			}
			// usr-merge and file-symlink aliases carry the target's digest.
			for alias, canon := range map[string]string{"/bin/ls": "/usr/bin/ls", "/usr/bin/dir": "/usr/bin/ls", "/lib/x86_64-linux-gnu/libz.so.1": "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13", "/sbin/true": "/usr/bin/true"} {
				if got := res.Policy.Digests[alias]; len(got) != 1 || got[0] != sums[canon] {
					t.Errorf("alias %s: %v, want %s", alias, got, sums[canon])
				}
			}
			if res.Unmeasured != 0 {
				t.Errorf("tcb left %d files unmeasured", res.Unmeasured)
			}
			if res.OSReleaseErr != nil || res.OSRelease["VERSION_ID"] != testimage.OSVersionID || res.OSRelease["IMAGE_VERSION"] != testimage.OSImageVersion {
				t.Errorf("os-release %v (%v)", res.OSRelease, res.OSReleaseErr)
			}
		})
		t.Run(name+"/exec", func(t *testing.T) {
			res := predictImage(t, img, predict.WithIMAPolicy(predict.Exec))
			for _, p := range execPaths {
				if got := res.Policy.Digests[p]; len(got) != 1 || got[0] != sums[p] {
					t.Errorf("%s: policy has %v, sha256sum %s", p, got, sums[p])
				}
			}
			for _, p := range notExec {
				if _, ok := res.Policy.Digests[p]; ok {
					t.Errorf("%s: not executable, but in the exec policy", p)
				}
			}
			classes := map[string]predict.Class{}
			for _, f := range res.Files {
				classes[f.Path] = f.Class
			}
			for p, want := range map[string]predict.Class{
				"/usr/bin/ls": predict.ClassExecutable, L.SharedObjects[0]: predict.ClassSharedObject,
				L.Modules[1]: predict.ClassModule, L.Firmware[0]: predict.ClassFirmware, L.ExecScripts[0]: predict.ClassScript,
			} {
				if classes[p] != want {
					t.Errorf("%s: class %q, want %q", p, classes[p], want)
				}
			}
			if res.Unmeasured != len(notExec) {
				t.Errorf("unmeasured %d, want %d", res.Unmeasured, len(notExec))
			}
		})
	}
}

func TestPredictOptions(t *testing.T) {
	src := testimage.Source(t)
	L := testimage.Layout

	t.Run("exclude", func(t *testing.T) {
		res := predictImage(t, src, predict.WithIMAPolicy(predict.Exec), predict.WithExcludes("/usr/lib/firmware/.*", "/usr/lib/modules/"))
		for _, p := range slices.Concat(L.Firmware, L.Modules) {
			if _, ok := res.Policy.Digests[p]; ok {
				t.Errorf("%s excluded but in policy", p)
			}
		}
		if res.Excluded != 3 || !slices.Contains(res.Policy.Excludes, "/usr/lib/firmware/.*") {
			t.Errorf("excluded %d, excludes %v", res.Excluded, res.Policy.Excludes)
		}
	})
	t.Run("sha1 matches sha1sum", func(t *testing.T) {
		testimage.RequireTools(t, "sha1sum")
		res := predictImage(t, src, predict.WithHashAlgorithm("sha1"))
		out := testimage.Run(t, src, "sha1sum", "usr/bin/ls")
		if got := res.Policy.Digests["/usr/bin/ls"]; len(got) != 1 || got[0] != string(out[:40]) {
			t.Errorf("sha1 %v, sha1sum %s", got, out[:40])
		}
	})
	t.Run("no aliases", func(t *testing.T) {
		res := predictImage(t, src, predict.WithoutAliases())
		if _, ok := res.Policy.Digests["/bin/ls"]; ok {
			t.Error("alias present")
		}
	})
	for _, bad := range []predict.Option{predict.WithHashAlgorithm("md5"), predict.WithIMAPolicy("all"), predict.WithExcludes("(?<=x)")} {
		r := rootfs.OpenDir(src)
		if _, err := predict.Predict(r, bad); err == nil {
			t.Error("bad option accepted")
		}
	}
}

// TestPredictedPolicyJudgesLog runs the evaluator on a log a device
// booted from the image would write: the prediction accepts it, and a
// changed binary is a violation.
func TestPredictedPolicyJudgesLog(t *testing.T) {
	src := testimage.Source(t)
	res := predictImage(t, testimage.Squashfs(t, src, "xz"), predict.WithIMAPolicy(predict.Exec))
	b, err := res.Policy.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	pol, err := runtimepolicy.Parse(b)
	if err != nil {
		t.Fatalf("predicted policy fails Keylime's schema: %v", err)
	}
	sums := testimage.Sha256Sums(t, src)
	entry := func(p, d string) ima.Entry {
		raw, _ := hex.DecodeString(d)
		return ima.Entry{PCR: 10, TemplateName: "ima-ng", DigestAlg: "sha256", Digest: raw, Path: p}
	}
	good := []ima.Entry{entry("/usr/bin/ls", sums["/usr/bin/ls"]), entry("/usr/bin/hello.sh", sums["/usr/bin/hello.sh"]), entry("/bin/cat", sums["/usr/bin/cat"])}
	if evs := runtimepolicy.Evaluate(pol, good); len(evs) != 0 {
		t.Fatalf("predicted policy rejects its own image: %v", evs)
	}
	bad := []ima.Entry{entry("/usr/bin/ls", sums["/usr/bin/cat"])}
	if evs := runtimepolicy.Evaluate(pol, bad); len(evs) != 1 {
		t.Fatalf("swapped binary not flagged: %v", evs)
	}
}

func TestPredictRefusesEmptyImage(t *testing.T) {
	if _, err := predict.Predict(rootfs.OpenDir(t.TempDir())); err == nil {
		t.Fatal("empty image predicted")
	}
}

func TestPredictWithBase(t *testing.T) {
	src := testimage.Source(t)
	base := runtimepolicy.Empty()
	agent := "ab" + strings.Repeat("cd", 31)
	base.Digests["/opt/vendor/agent"] = []string{agent}
	base.Excludes = []string{"/var/log/.*"}
	res := predictImage(t, src, predict.WithIMAPolicy(predict.Exec), predict.WithBase(base))
	if got := res.Policy.Digests["/opt/vendor/agent"]; len(got) != 1 || got[0] != agent {
		t.Errorf("base digest lost: %v", got)
	}
	if !res.Policy.Excluded("/var/log/x") || len(res.Policy.Digests["/usr/bin/ls"]) != 1 {
		t.Errorf("merge: excludes %v, ls %v", res.Policy.Excludes, res.Policy.Digests["/usr/bin/ls"])
	}
	if len(base.Digests) != 1 {
		t.Error("base policy modified")
	}
}
