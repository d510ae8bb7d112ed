package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/ratatouille/rat/ota/predict"
	"github.com/ratatouille/rat/ota/release"
	"github.com/ratatouille/rat/ota/rollout"
)

func init() {
	register(command{name: "ota", summary: "OTA releases: predictive policy from an image, artifact metadata", run: runOTA})
}

const otaUsage = `usage:
  rat ota policy --image IMG --release VERSION --group G [--ima-policy tcb|exec]
                 [--exclude RE]... [--exclude-list F] [--hash-alg sha256] [--rootfs NAME]
                 [--no-aliases] [--base group-policy.json] [--release-out release.json] -o policy.json
  rat ota info --image IMG [--release VERSION] [--json]
IMG is a RAUC bundle, SWUpdate .swu, Mender artifact, bare rootfs image
(ext4, squashfs, tar[.gz|.xz|.zst]) or a directory.
exit: 0 ok, 2 usage or unusable input`

func runOTA(args []string) int {
	return dispatch("rat ota", otaUsage, args, map[string]verb{"policy": otaPolicy, "info": otaInfo})
}

func otaPolicy(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rat ota policy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	image := fs.String("image", "", "release artifact, rootfs image or directory")
	version := fs.String("release", "", "release version (must match the artifact's own)")
	group := fs.String("group", "", "device group the release is for")
	imaPolicy := fs.String("ima-policy", "tcb", "kernel IMA policy of the release: tcb or exec")
	var excludes multiFlag
	fs.Var(&excludes, "exclude", "exclude regex (Keylime syntax, repeatable)")
	excludeList := fs.String("exclude-list", "", "file of exclude regexes, one per line")
	hashAlg := fs.String("hash-alg", "sha256", "the kernel's IMA hash algorithm (ima_hash)")
	rootfsName := fs.String("rootfs", "", "image inside the artifact to read (default: the one named rootfs)")
	noAliases := fs.Bool("no-aliases", false, "key files only by canonical path (no symlink names)")
	base := fs.String("base", "", "group base policy to merge the prediction into (files devices add beyond the image)")
	releaseOut := fs.String("release-out", "", "write the draft release record (JSON) for the hub here")
	out := fs.String("o", "", "output policy file (- for stdout)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *image == "" || *version == "" || *group == "" || *out == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "rat ota policy: need --image, --release, --group and -o")
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "rat ota policy: %v\n", err)
		return 2
	}
	if *excludeList != "" {
		b, err := os.ReadFile(*excludeList)
		if err != nil {
			return fail(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				excludes = append(excludes, l)
			}
		}
	}
	tmp, err := os.MkdirTemp("", "rat-ota-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(tmp)
	opts := []release.Option{release.WithVersion(*version), release.WithTempDir(tmp)}
	if *rootfsName != "" {
		opts = append(opts, release.WithImage(*rootfsName))
	}
	rel, err := release.Open(*image, opts...)
	if err != nil {
		return fail(err)
	}
	defer rel.Close()
	rd, err := rel.OpenRootfs()
	if err != nil {
		return fail(err)
	}
	defer rd.Close()
	popts := []predict.Option{predict.WithIMAPolicy(predict.IMAPolicy(*imaPolicy)), predict.WithHashAlgorithm(*hashAlg), predict.WithExcludes(excludes...)}
	if *noAliases {
		popts = append(popts, predict.WithoutAliases())
	}
	if *base != "" {
		bp, err := loadPolicy(*base)
		if err != nil {
			return fail(err)
		}
		popts = append(popts, predict.WithBase(bp))
	}
	res, err := predict.Predict(rd, popts...)
	if err != nil {
		return fail(err)
	}
	b, err := res.Policy.Marshal()
	if err != nil {
		return fail(err)
	}
	b = append(b, '\n')
	if *out == "-" {
		_, err = stdout.Write(b)
	} else {
		err = os.WriteFile(*out, b, 0o644)
	}
	if err != nil {
		return fail(err)
	}
	sum := sha256.Sum256(b)
	policyDigest := hex.EncodeToString(sum[:])
	if *releaseOut != "" {
		rec, err := rollout.NewRelease(*group, rel.Version, rel.Digest, policyDigest)
		if err != nil {
			return fail(err)
		}
		rb, err := json.MarshalIndent(rec, "", "  ")
		if err != nil {
			return fail(err)
		}
		if err := os.WriteFile(*releaseOut, append(rb, '\n'), 0o644); err != nil {
			return fail(err)
		}
	}
	classes := map[predict.Class]int{}
	aliases := 0
	for _, f := range res.Files {
		if f.AliasOf != "" {
			aliases++
			continue
		}
		classes[f.Class]++
	}
	var parts []string
	for c, n := range classes {
		parts = append(parts, fmt.Sprintf("%d %s", n, c))
	}
	sort.Strings(parts)
	fmt.Fprintf(stderr, "group %s release %s (%s", *group, rel.Version, rel.Format)
	if rel.RootfsImage != "" {
		fmt.Fprintf(stderr, ", rootfs %s", rel.RootfsImage)
	}
	fmt.Fprintf(stderr, ")\nimage digest sha256:%s\nima policy %s, %s: %s; %d symlink names; %d files not measured; %d excluded\npolicy digest sha256:%s (sign it before approval: rat policy sign)\n",
		orNone(rel.Digest), *imaPolicy, res.Algorithm, strings.Join(parts, ", "), aliases, res.Unmeasured, res.Excluded, policyDigest)
	osReleaseCheck(stderr, rel.Version, res)
	return 0
}

// osReleaseCheck warns when devices booted from the image would report a
// release other than the one being registered: the hub would then find
// no release for them and call them UNTRUSTED (ota.release.unknown).
func osReleaseCheck(w io.Writer, version string, res *predict.Result) {
	switch {
	case res.OSReleaseErr != nil:
		fmt.Fprintf(w, "warning: the image's os-release is unreadable (%v): devices cannot report their release from it\n", res.OSReleaseErr)
	case res.OSRelease == nil:
		fmt.Fprintln(w, "warning: the image has no os-release: devices must report their release with a configured command (e.g. rauc status)")
	default:
		vid, iv := res.OSRelease["VERSION_ID"], res.OSRelease["IMAGE_VERSION"]
		if version != vid && version != iv {
			fmt.Fprintf(w, "warning: devices booted from this image report VERSION_ID=%q IMAGE_VERSION=%q from os-release, not release %q: the hub will find no release for them (ota.release.unknown) unless the agent's release command reports %q\n", vid, iv, version, version)
		} else {
			fmt.Fprintf(w, "os-release matches: devices report %q\n", version)
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "(none: a directory has no single artifact digest)"
	}
	return s
}

func otaInfo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rat ota info", flag.ContinueOnError)
	fs.SetOutput(stderr)
	image := fs.String("image", "", "release artifact")
	version := fs.String("release", "", "release version (needed for a bare image)")
	asJSON := fs.Bool("json", false, "print as JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *image == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "rat ota info: need --image")
		return 2
	}
	var opts []release.Option
	if *version != "" {
		opts = append(opts, release.WithVersion(*version))
	}
	rel, err := release.Open(*image, opts...)
	if err != nil {
		fmt.Fprintf(stderr, "rat ota info: %v\n", err)
		return 2
	}
	defer rel.Close()
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rel); err != nil {
			return 2
		}
		return 0
	}
	fmt.Fprintf(stdout, "format:     %s\nversion:    %s\n", rel.Format, rel.Version)
	if rel.Name != "" {
		fmt.Fprintf(stdout, "name:       %s\n", rel.Name)
	}
	fmt.Fprintf(stdout, "compatible: %s\ndigest:     sha256:%s\nrootfs:     %s\n", strings.Join(rel.Compatible, ", "), orNone(rel.Digest), rel.RootfsImage)
	for _, im := range rel.Images {
		fmt.Fprintf(stdout, "image:      %s (%s) sha256:%s\n", im.Filename, im.Type, im.SHA256)
	}
	return 0
}
