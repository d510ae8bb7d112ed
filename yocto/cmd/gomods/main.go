// Command gomods writes the Go module includes of meta-ratatouille's
// rat-agent recipe from device/go.sum (see package yocto/gomods), sets the
// recipe's SRCREV to the commit whose go.sum they were made from, and its
// RAT_AGENT_GO_MIN to device/go.mod's go version.
//
//	go run ./yocto/cmd/gomods [-srcrev HEAD] [-check]
//
// Run it from the repository root (make yocto-mods does). With -check it
// writes nothing and exits 1 when the files on disk differ.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/ratatouille/rat/yocto/gomods"
)

const (
	moduleDir = "device"
	recipeDir = "yocto/meta-ratatouille/recipes-security/rat-agent"
	recipe    = "rat-agent_git.bb"
	agentPkg  = "./cmd/rat-agent"
)

var (
	srcrevLine = regexp.MustCompile(`(?m)^SRCREV = "[0-9a-f]*"$`)
	goMinLine  = regexp.MustCompile(`(?m)^RAT_AGENT_GO_MIN = "[0-9.]*"$`)
	goLine     = regexp.MustCompile(`(?m)^go ([0-9]+\.[0-9]+)(\.[0-9]+)?\s*$`)
)

func main() {
	srcrev := flag.String("srcrev", "HEAD", `commit for the recipe's SRCREV ("" keeps it)`)
	check := flag.Bool("check", false, "only compare; exit 1 when the includes are stale")
	flag.Parse()
	if err := run(*srcrev, *check); err != nil {
		fmt.Fprintln(os.Stderr, "gomods:", err)
		os.Exit(1)
	}
}

func run(srcrev string, check bool) error {
	res, err := gomods.Generate(context.Background(), gomods.Options{
		ModuleDir: moduleDir,
		Packages:  gomods.AgentPackages(moduleDir, agentPkg),
	})
	if err != nil {
		return err
	}
	files := map[string][]byte{
		filepath.Join(recipeDir, "rat-agent-go-mods.inc"):  res.GoMods,
		filepath.Join(recipeDir, "rat-agent-licenses.inc"): res.LicInc,
	}
	if srcrev != "" && !check {
		out, err := exec.Command("git", "rev-parse", "--verify", srcrev+"^{commit}").Output()
		if err != nil {
			return fmt.Errorf("git rev-parse %s: %w", srcrev, err)
		}
		bb := filepath.Join(recipeDir, recipe)
		data, err := os.ReadFile(bb)
		if err != nil {
			return err
		}
		if !srcrevLine.Match(data) {
			return fmt.Errorf("%s: no SRCREV = \"...\" line", bb)
		}
		data = srcrevLine.ReplaceAll(data, []byte(`SRCREV = "`+strings.TrimSpace(string(out))+`"`))
		// RAT_AGENT_GO_MIN follows device/go.mod's go line (major.minor).
		gomod, err := os.ReadFile(filepath.Join(moduleDir, "go.mod"))
		if err != nil {
			return err
		}
		m := goLine.FindSubmatch(gomod)
		if m == nil || !goMinLine.Match(data) {
			return fmt.Errorf("no go line in %s/go.mod or no RAT_AGENT_GO_MIN line in %s", moduleDir, bb)
		}
		files[bb] = goMinLine.ReplaceAll(data, []byte(`RAT_AGENT_GO_MIN = "`+string(m[1])+`"`))
	}
	stale := false
	for path, want := range files {
		have, _ := os.ReadFile(path)
		if bytes.Equal(have, want) {
			continue
		}
		stale = true
		if check {
			fmt.Fprintf(os.Stderr, "gomods: %s is stale: run make yocto-mods\n", path)
			continue
		}
		if err := os.WriteFile(path, want, 0o644); err != nil {
			return err
		}
		fmt.Println("wrote", path)
	}
	if check && stale {
		os.Exit(1)
	}
	return nil
}
