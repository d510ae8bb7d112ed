package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const elTestdata = "../../evidence/eventlog/testdata/"

func TestEventlogReplayCLI(t *testing.T) {
	tampered := filepath.Join(t.TempDir(), "tampered.bin")
	raw, err := os.ReadFile(elTestdata + "keylime-mb_log.bin")
	if err != nil {
		t.Fatal(err)
	}
	// Flip the last byte of the SecureBoot variable event's data (01 -> 00):
	// the replay is unchanged, but the data no longer hashes to its digest.
	i := bytes.Index(raw, []byte("S\x00e\x00c\x00u\x00r\x00e\x00B\x00o\x00o\x00t\x00\x01"))
	if i < 0 {
		t.Fatal("SecureBoot variable not found")
	}
	raw[i+20] = 0
	if err := os.WriteFile(tampered, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"text", []string{"replay", elTestdata + "keylime-mb_log.bin"}, 0, []string{"   7: b4d804679133a73c3988362ef234fbf597f0490d1a0cae072949b63a93fb7b39", "Secure Boot: enabled", "authority  event  29: Shim (CN="}},
		{"flags after file", []string{"replay", elTestdata + "fedora41-sha1-sha256.bin", "--bank", "sha1"}, 0, []string{"  14: ffaf5dfab351dc9b3b7a3cf748759e137f1601a8", "Secure Boot: disabled"}},
		{"sha384", []string{"replay", "--bank", "sha384", elTestdata + "ubuntu2404-sha256-sha384.bin"}, 0, []string{"   7: c954c73e233dbcefe05a2a2126a9eadc8fd67377d159eaec09816736d3813a38c69017c2e1e71edc9c83c1237796783b"}},
		{"bank not in log", []string{"replay", "--bank", "sha1", elTestdata + "secureboot-on.bin"}, 2, []string{"bank not in log"}},
		{"unknown bank", []string{"replay", "--bank", "md5", elTestdata + "secureboot-on.bin"}, 2, []string{"unknown bank"}},
		{"tampered SecureBoot value", []string{"replay", tampered}, 2, []string{"does not hash to its sha256 digest"}},
		{"not a log", []string{"replay", "eventlog.go"}, 2, []string{"rat eventlog replay"}},
		{"missing", []string{"replay", "/nonexistent"}, 2, []string{"no such file"}},
		{"no verb", nil, 2, []string{"usage"}},
		{"two files", []string{"replay", "a", "b"}, 2, []string{"usage"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := runEventlog(tc.args, &out, &errb)
			all := out.String() + errb.String()
			if code != tc.code {
				t.Fatalf("code %d, want %d: %s", code, tc.code, all)
			}
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Fatalf("output lacks %q:\n%s", w, all)
				}
			}
		})
	}
}

func TestEventlogReplayJSON(t *testing.T) {
	var out, errb bytes.Buffer
	if code := runEventlog([]string{"replay", "--json", elTestdata + "secureboot-on.bin"}, &out, &errb); code != 0 {
		t.Fatalf("code %d: %s", code, errb.String())
	}
	var got struct {
		SHA256     map[string]string `json:"sha256"`
		SecureBoot struct {
			Enabled   bool `json:"enabled"`
			Variables []struct {
				Name         string   `json:"name"`
				X509         []string `json:"x509"`
				SHA256Hashes int      `json:"sha256_hashes"`
			} `json:"variables"`
		} `json:"secure_boot"`
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.SHA256["7"] != "2f96e1f1bf7f91b6f17e1bcb823e717e43782ff75481237711f2ed7bf8a8edb1" || len(got.SHA256) != 11 {
		t.Fatalf("sha256 PCRs %v", got.SHA256)
	}
	if !got.SecureBoot.Enabled || len(got.SecureBoot.Variables) != 5 || got.SecureBoot.Variables[4].Name != "dbx" || got.SecureBoot.Variables[4].SHA256Hashes == 0 {
		t.Fatalf("secure boot %+v", got.SecureBoot)
	}
	// The output is also a pcrs.json that rat quote verify reads.
	pcrs, err := parsePCRsJSON(out.Bytes())
	if err != nil || len(pcrs[0x000b]) != 11 {
		t.Fatalf("as pcrs.json: %v %v", pcrs, err)
	}
}
