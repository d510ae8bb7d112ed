package gomods

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// LicenseFile is one LIC_FILES_CHKSUM entry: a license file of a module
// linked into the program, as found in the module cache.
type LicenseFile struct {
	Path string // relative to the module cache, e.g. github.com/google/go-tpm@v0.9.8/LICENSE
	MD5  string // hex md5 of the whole file (what bitbake checks)
	SPDX string // SPDX id of the license text
}

// licenses lists the license files of the modules whose packages the
// recipe's packages depend on. Modules outside the module cache (the
// replaced evidence module, the main module) are the project's own code.
func licenses(ctx context.Context, opt Options, cache string) ([]LicenseFile, error) {
	args := append([]string{"list", "-deps", "-json=Module"}, opt.Packages...)
	out, err := goOutput(ctx, opt, nil, args...)
	if err != nil {
		return nil, err
	}
	dirs := map[string]string{} // module dir -> module@version
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		var p struct {
			Module *struct{ Path, Version, Dir string }
		}
		if derr := dec.Decode(&p); derr == io.EOF {
			break
		} else if derr != nil {
			return nil, fmt.Errorf("gomods: go list -json output: %w", derr)
		}
		if p.Module == nil || p.Module.Dir == "" {
			continue
		}
		rel, err := filepath.Rel(cache, p.Module.Dir)
		if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			continue
		}
		dirs[p.Module.Dir] = p.Module.Path + "@" + p.Module.Version
	}
	var lics []LicenseFile
	for dir, key := range dirs {
		found, err := moduleLicenses(cache, dir)
		if err != nil {
			return nil, fmt.Errorf("gomods: %s: %w", key, err)
		}
		lics = append(lics, found...)
	}
	sort.Slice(lics, func(i, j int) bool { return foldURI(lics[i].Path) < foldURI(lics[j].Path) })
	return lics, nil
}

// moduleLicenses finds and classifies the license files at the root of a
// module. A module without one, or with a text Classify does not know, is
// an error: the recipe must not ship code whose license nobody read.
func moduleLicenses(cache, dir string) ([]LicenseFile, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []LicenseFile
	for _, e := range ents {
		if e.IsDir() || !isLicenseName(e.Name()) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		id, err := Classify(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Name(), err)
		}
		rel, _ := filepath.Rel(cache, filepath.Join(dir, e.Name()))
		sum := md5.Sum(data)
		out = append(out, LicenseFile{Path: filepath.ToSlash(rel), MD5: hex.EncodeToString(sum[:]), SPDX: id})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no LICENSE or COPYING file at the module root")
	}
	return out, nil
}

func isLicenseName(name string) bool {
	base := strings.ToUpper(strings.TrimSuffix(name, filepath.Ext(name)))
	if ext := strings.ToLower(filepath.Ext(name)); ext != "" && ext != ".txt" && ext != ".md" {
		return false
	}
	return base == "LICENSE" || base == "LICENCE" || base == "COPYING"
}

// Classify names the SPDX license of a license text by the sentences each
// license is made of. It knows the licenses Go modules commonly carry and
// refuses the rest rather than guess. A file that carries several licenses
// (gopkg.in/yaml.v3: MIT and Apache-2.0) gets all of them, joined by "&".
func Classify(text []byte) (string, error) {
	t := strings.Join(strings.Fields(strings.ToLower(string(text))), " ")
	has := func(s string) bool { return strings.Contains(t, s) }
	if has("eclipse public license - v 2.0") {
		if has("eclipse distribution license") {
			// Eclipse dual licensing (paho): the recipient picks either.
			return "(BSD-3-Clause | EPL-2.0)", nil
		}
		return "EPL-2.0", nil
	}
	var ids []string
	if has("apache license") && has("version 2.0") {
		ids = append(ids, "Apache-2.0")
	}
	if has("mozilla public license version 2.0") || has("mozilla public license, version 2.0") {
		ids = append(ids, "MPL-2.0")
	}
	if has("permission is hereby granted, free of charge, to any person obtaining a copy") {
		ids = append(ids, "MIT")
	}
	if has("redistribution and use in source and binary forms") {
		if has("neither the name") || has("may be used to endorse or promote products") {
			ids = append(ids, "BSD-3-Clause")
		} else {
			ids = append(ids, "BSD-2-Clause")
		}
	}
	if has("permission to use, copy, modify, and/or distribute this software for any purpose with or without fee") ||
		has("permission to use, copy, modify, and distribute this software for any purpose with or without fee") {
		ids = append(ids, "ISC")
	}
	switch len(ids) {
	case 0:
		return "", fmt.Errorf("license text not recognised (add it to gomods.Classify after reading it)")
	case 1:
		return ids[0], nil
	}
	return "(" + strings.Join(ids, " & ") + ")", nil
}
