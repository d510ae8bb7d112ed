package gomods

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	float16Zip = "h1:qLwI1I70+NjRFUR3zs1JPUCgaCXSh3SW62uAKT1mSBM="
	float16Mod = "h1:14CWIYCyZA/cWjXOioeEpHeN/83MdbZDRQHoFcYsOfg="
	goTPMMod   = "h1:h9jEsEECg7gtLis0upRBQU+GhYVH6jMjrFxI8u6bVUY="
)

func TestParseGoSum(t *testing.T) {
	sum := "github.com/x448/float16 v0.8.4 " + float16Zip + "\n" +
		"github.com/x448/float16 v0.8.4/go.mod " + float16Mod + "\r\n\n" +
		"github.com/google/go-tpm v0.9.8/go.mod " + goTPMMod + "\n" +
		"github.com/google/go-tpm v0.9.8/go.mod " + goTPMMod + "\n" // exact duplicate: kept once
	sums, err := ParseGoSum([]byte(sum))
	if err != nil {
		t.Fatal(err)
	}
	mods := Modules(sums)
	if len(mods) != 2 {
		t.Fatalf("Modules = %+v, want 2", mods)
	}
	if m := mods[0]; m.Key() != "github.com/google/go-tpm@v0.9.8" || m.NeedsZip() || m.ModHash != goTPMMod {
		t.Errorf("go-tpm = %+v, want go.mod only", m)
	}
	if m := mods[1]; m.Key() != "github.com/x448/float16@v0.8.4" || m.ZipHash != float16Zip || m.ModHash != float16Mod {
		t.Errorf("float16 = %+v", m)
	}
}

func TestParseGoSumRefuses(t *testing.T) {
	cases := []struct{ sum, why string }{
		{"github.com/a/b v1.0.0\n", "fields"},
		{"github.com/a/b v1.0.0 h1:x y\n", "fields"},
		{"github.com/a/b v1.0.0 h2:" + strings.Repeat("A", 43) + "=\n", "h1"},
		{"github.com/a/b v1.0.0 h1:AAAA\n", "32"},
		{"github.com/a/b v1.0.0 h1:!!!!\n", "illegal"},
		{"github.com/a/b 1.0.0 " + float16Zip + "\n", "semantic"},
		{"github.com/a/b v1.0.0;x " + float16Zip + "\n", "character"},
		{"github.com/a/b;mod=1 v1.0.0 " + float16Zip + "\n", "character"},
		{"github.com/../b v1.0.0 " + float16Zip + "\n", "element"},
		{"/b v1.0.0 " + float16Zip + "\n", "empty element"},
		{"github.com/a/b v1.0.0 " + float16Zip + "\ngithub.com/a/b v1.0.0 " + float16Mod + "\n", "different hashes"},
	}
	for _, c := range cases {
		_, err := ParseGoSum([]byte(c.sum))
		if err == nil || !strings.Contains(err.Error(), c.why) {
			t.Errorf("ParseGoSum(%q) = %v, want an error about %q", c.sum, err, c.why)
		}
	}
}

// The h1 implementation agrees with the go command's hashes in go.sum.
func TestH1MatchesGoSum(t *testing.T) {
	mod, err := os.ReadFile("testdata/cache/download/github.com/google/go-tpm/@v/v0.9.8.mod")
	if err != nil {
		t.Fatal(err)
	}
	if got := goModH1(mod); got != goTPMMod {
		t.Errorf("goModH1(go-tpm go.mod) = %s, want %s", got, goTPMMod)
	}
	got, err := zipH1("testdata/cache/download/github.com/x448/float16/@v/v0.8.4.zip")
	if err != nil || got != float16Zip {
		t.Errorf("zipH1(float16) = %s, %v; want %s", got, err, float16Zip)
	}
}

func TestEntries(t *testing.T) {
	mods := []Module{
		{Path: "github.com/google/go-tpm", Version: "v0.9.8", ModHash: goTPMMod},
		{Path: "github.com/x448/float16", Version: "v0.8.4", ZipHash: float16Zip, ModHash: float16Mod},
	}
	entries, err := Entries("testdata", mods)
	if err != nil {
		t.Fatal(err)
	}
	want := "" +
		"gomod://github.com/google/go-tpm;version=v0.9.8;mod=1;sha256sum=356b36889e4a391711d858bc6232b174b0dc9f6c527f7702f82dbf58a0fc5931\n" +
		"gomod://github.com/x448/float16;version=v0.8.4;sha256sum=73b24a41037ea999ab66851e3798a0973dbb1f214925915b01f0820f7b2f1500\n"
	var got string
	for _, e := range entries {
		got += e.URI() + "\n"
	}
	if got != want {
		t.Errorf("Entries =\n%s\nwant\n%s", got, want)
	}
	inc := string(RenderGoMods(entries))
	if !strings.Contains(inc, "SRC_URI += \"\\\n    gomod://github.com/google/go-tpm;") || !strings.HasSuffix(inc, " \\\n\"\n") {
		t.Errorf("RenderGoMods =\n%s", inc)
	}
}

// A module cache whose file is not what go.sum pins is refused, whatever
// the go command would have said about it.
func TestEntriesRefuseTamperedCache(t *testing.T) {
	dir := t.TempDir()
	for _, rel := range []string{
		"cache/download/github.com/google/go-tpm/@v/v0.9.8.mod",
		"cache/download/github.com/x448/float16/@v/v0.8.4.zip",
		"cache/download/github.com/x448/float16/@v/v0.8.4.mod",
	} {
		data, err := os.ReadFile(filepath.Join("testdata", rel))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, rel)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, rel), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	modOnly := Module{Path: "github.com/google/go-tpm", Version: "v0.9.8", ModHash: goTPMMod}
	withZip := Module{Path: "github.com/x448/float16", Version: "v0.8.4", ZipHash: float16Zip, ModHash: float16Mod}
	if _, err := Entries(dir, []Module{modOnly, withZip}); err != nil {
		t.Fatalf("untampered copy: %v", err)
	}
	// go.mod with one more byte.
	p := filepath.Join(dir, "cache/download/github.com/google/go-tpm/@v/v0.9.8.mod")
	data, _ := os.ReadFile(p)
	os.WriteFile(p, append(data, '\n'), 0o644)
	if _, err := Entries(dir, []Module{modOnly}); err == nil || !strings.Contains(err.Error(), "go.sum pins") {
		t.Errorf("tampered go.mod: %v", err)
	}
	// The zip hash pinned for another module's zip.
	other := withZip
	other.ZipHash = goTPMMod
	if _, err := Entries(dir, []Module{other}); err == nil || !strings.Contains(err.Error(), "go.sum pins") {
		t.Errorf("wrong zip hash: %v", err)
	}
	// A missing zip.
	os.Remove(filepath.Join(dir, "cache/download/github.com/x448/float16/@v/v0.8.4.zip"))
	if _, err := Entries(dir, []Module{withZip}); err == nil {
		t.Error("missing zip accepted")
	}
}

func TestClassify(t *testing.T) {
	cases := []struct{ text, want string }{
		{"Apache License\n   Version 2.0, January 2004", "Apache-2.0"},
		{"Permission is hereby granted, free of charge, to any person obtaining a copy\nof this software", "MIT"},
		{"Redistribution and use in source and binary forms, with or without\nmodification ... Neither the name of Google Inc.", "BSD-3-Clause"},
		{"Redistribution and use in source and binary forms, with or without modification, are permitted", "BSD-2-Clause"},
		{"Mozilla Public License Version 2.0\n==", "MPL-2.0"},
		{"Permission to use, copy, modify, and/or distribute this software for any purpose with or without fee is hereby granted", "ISC"},
		{"Eclipse Public License - v 2.0\n ... and Eclipse Distribution License v1.0", "(BSD-3-Clause | EPL-2.0)"},
		{"Eclipse Public License - v 2.0", "EPL-2.0"},
		{"MIT License ... Permission is hereby granted, free of charge, to any person obtaining a copy ... Apache License\nVersion 2.0", "(Apache-2.0 & MIT)"},
	}
	for _, c := range cases {
		got, err := Classify([]byte(c.text))
		if err != nil || got != c.want {
			t.Errorf("Classify(%.40q) = %q, %v; want %q", c.text, got, err, c.want)
		}
	}
	if got, err := Classify([]byte("GNU GENERAL PUBLIC LICENSE Version 3")); err == nil {
		t.Errorf("Classify(GPL-3.0) = %q, want an error (unknown texts are refused)", got)
	}
}

func TestRenderLicenses(t *testing.T) {
	inc := string(RenderLicenses([]LicenseFile{
		{Path: "github.com/x448/float16@v0.8.4/LICENSE", MD5: "de8f8e025d57fe7ee0b67f30d571323b", SPDX: "MIT"},
		{Path: "github.com/eclipse/paho.mqtt.golang@v1.5.1/LICENSE", MD5: "dcdb33474b60c38efd27356d8f2edec7", SPDX: "(BSD-3-Clause | EPL-2.0)"},
	}))
	for _, want := range []string{
		`LICENSE += "& (BSD-3-Clause | EPL-2.0) & MIT"`,
		"    file://pkg/mod/github.com/x448/float16@v0.8.4/LICENSE;md5=de8f8e025d57fe7ee0b67f30d571323b;spdx=MIT \\\n",
		";spdx=%28BSD-3-Clause+%7C+EPL-2.0%29 \\\n",
	} {
		if !strings.Contains(inc, want) {
			t.Errorf("RenderLicenses lacks %q:\n%s", want, inc)
		}
	}
}

func TestEscapePath(t *testing.T) {
	if got := escapePath("github.com/BurntSushi/toml"); got != "github.com/!burnt!sushi/toml" {
		t.Errorf("escapePath = %s", got)
	}
}

func FuzzParseGoSum(f *testing.F) {
	f.Add([]byte("github.com/x448/float16 v0.8.4 " + float16Zip + "\ngithub.com/x448/float16 v0.8.4/go.mod " + float16Mod + "\n"))
	f.Add([]byte("golang.org/x/sys v0.0.0-20230620182252-4639ecce2aba/go.mod " + goTPMMod + "\n"))
	if data, err := os.ReadFile("../../device/go.sum"); err == nil {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sums, err := ParseGoSum(data)
		if err != nil {
			return
		}
		// Every accepted line renders to a SRC_URI entry bitbake splits
		// back into the same module and version: no ';', space or quote
		// can reach the recipe from go.sum.
		for _, m := range Modules(sums) {
			uri := Entry{Module: m, SHA256: strings.Repeat("0", 64)}.URI()
			if strings.ContainsAny(uri, " \t\n\"\\$") {
				t.Fatalf("URI %q has a character bitbake would misread", uri)
			}
			parts := strings.Split(strings.TrimPrefix(uri, "gomod://"), ";")
			if len(parts) != 3 || parts[0] != m.Path || parts[1] != "version="+m.Version {
				t.Fatalf("URI %q does not split back into %s", uri, m.Key())
			}
		}
	})
}
