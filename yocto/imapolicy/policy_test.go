package imapolicy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseRuleAccepts(t *testing.T) {
	cases := []struct {
		line string
		want string // rendered rule
	}{
		{"measure func=BPRM_CHECK template=ima-ng", "measure func=BPRM_CHECK template=ima-ng"},
		{"\tmeasure  func=FILE_MMAP\tmask=MAY_EXEC ", "measure func=FILE_MMAP mask=MAY_EXEC"},
		{"measure func=MMAP_CHECK mask=^MAY_EXEC", "measure func=MMAP_CHECK mask=^MAY_EXEC"},
		{"dont_measure fsmagic=0x9fa0", "dont_measure fsmagic=0x9fa0"},
		{"measure func=FILE_CHECK mask=MAY_READ uid=0", "measure func=FILE_CHECK mask=MAY_READ uid=0"},
		{"measure func=FILE_CHECK euid<1000 fowner>0 fgroup=0", "measure func=FILE_CHECK euid<1000 fowner>0 fgroup=0"},
		{"measure fsuuid=8bcbe394-4f13-4144-be8e-5aa9ea2ce2f6", "measure fsuuid=8bcbe394-4f13-4144-be8e-5aa9ea2ce2f6"},
		{"measure func=MODULE_CHECK pcr=11 template=ima-sig", "measure func=MODULE_CHECK pcr=11 template=ima-sig"},
		{"appraise func=MODULE_CHECK appraise_type=imasig|modsig", "appraise func=MODULE_CHECK appraise_type=imasig|modsig"},
		{"appraise func=BPRM_CHECK appraise_algos=sha256,sha512 permit_directio", "appraise func=BPRM_CHECK appraise_algos=sha256,sha512 permit_directio"},
		{"measure func=KEY_CHECK keyrings=.ima|.builtin_trusted_keys", "measure func=KEY_CHECK keyrings=.ima|.builtin_trusted_keys"},
		{"measure func=CRITICAL_DATA label=selinux", "measure func=CRITICAL_DATA label=selinux"},
		{"measure func=KEXEC_CMDLINE", "measure func=KEXEC_CMDLINE"},
		{"dont_measure obj_type=var_log_t", "dont_measure obj_type=var_log_t"},
		{"measure subj_user=system_u func=FILE_CHECK mask=MAY_READ", "measure subj_user=system_u func=FILE_CHECK mask=MAY_READ"},
		{"appraise digest_type=verity func=BPRM_CHECK appraise_type=sigv3", "appraise digest_type=verity func=BPRM_CHECK appraise_type=sigv3"},
		{"audit func=BPRM_CHECK", "audit func=BPRM_CHECK"},
		{"hash", "hash"},
	}
	for _, c := range cases {
		r, err := ParseRule(c.line)
		if err != nil {
			t.Errorf("ParseRule(%q): %v", c.line, err)
			continue
		}
		if got := r.String(); got != c.want {
			t.Errorf("ParseRule(%q) = %q, want %q", c.line, got, c.want)
		}
	}
}

func TestParseRuleRefuses(t *testing.T) {
	cases := []struct{ line, why string }{
		{"measured func=BPRM_CHECK", "not an action"},
		{"func=BPRM_CHECK measure", "not an action"},
		{"measure dont_measure", "second action"},
		{"measure func=BPRM", "unknown hook"},
		{"measure func=BPRM_CHECK func=FILE_CHECK", "twice"},
		{"measure uid=0 uid>5", "twice"},
		{"measure mask=MAY_RUN", "mask"},
		{"measure fsmagic=proc", "hex"},
		{"measure fsmagic=", "empty value"},
		{"measure fsuuid=not-a-uuid", "UUID"},
		{"measure uid=-1", "decimal"},
		{"measure uid=root", "decimal"},
		{"measure func<BPRM_CHECK", "take < and >"},
		{"measure template=ima-xx", "built-in template"},
		{"dont_measure template=ima-ng", "measure action"},
		{"appraise pcr=10", "measure action"},
		{"measure pcr=64", "PCR index"},
		{"measure appraise_type=imasig", "appraise action"},
		{"appraise appraise_type=sig", "imasig"},
		{"appraise appraise_algos=sha256,crc32", "hash algorithm"},
		{"measure func=BPRM_CHECK keyrings=.ima", "KEY_CHECK"},
		{"measure func=BPRM_CHECK label=selinux", "CRITICAL_DATA"},
		{"appraise func=KEY_CHECK", "only measure"},
		{"measure func=KEY_CHECK mask=MAY_READ", "does not take mask"},
		{"measure func=KEY_CHECK keyrings=.ima||x", "empty name"},
		{"measure func=BPRM_CHECK # exec", "unknown token"},
		{"measure digest_type=sha256", "verity"},
		{"measure bogus", "unknown token"},
		{"measure func=BPRM_CHECK\x00", "NUL"},
	}
	for _, c := range cases {
		_, err := ParseRule(c.line)
		if err == nil {
			t.Errorf("ParseRule(%q) accepted, want an error about %s", c.line, c.why)
			continue
		}
		if !strings.Contains(err.Error(), c.why) {
			t.Errorf("ParseRule(%q) = %v, want it to say %q", c.line, err, c.why)
		}
	}
}

func TestParseNamesTheLine(t *testing.T) {
	_, err := Parse([]byte("# header\n\nmeasure func=BPRM_CHECK\n  # indented comment\nmeasure func=NOPE\n"))
	if err == nil || !strings.Contains(err.Error(), "line 5") {
		t.Fatalf("Parse = %v, want an error naming line 5", err)
	}
	rules, err := Parse([]byte("# only comments\n\n\t# and blanks\n"))
	if err != nil || len(rules) != 0 {
		t.Fatalf("Parse(comments) = %v, %v; want no rules", rules, err)
	}
}

// Real policies that Yocto images ship must parse.
func TestParseMetaIntegrityPolicies(t *testing.T) {
	files, err := filepath.Glob("testdata/meta-integrity-*")
	if err != nil || len(files) != 3 {
		t.Fatalf("testdata: %v %v", files, err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rules, err := Parse(data)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if len(rules) < 2 {
			t.Errorf("%s: %d rules", f, len(rules))
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("measure func=BPRM_CHECK template=ima-ng\ndont_measure fsmagic=0x9fa0\n"))
	f.Add([]byte("appraise func=MODULE_CHECK appraise_type=imasig|modsig\n# c\n"))
	f.Add([]byte("measure func=KEY_CHECK keyrings=.ima|.evm pcr=12 uid<1000\n"))
	f.Add([]byte("measure fsuuid=8bcbe394-4f13-4144-be8e-5aa9ea2ce2f6 euid>0 permit_directio\n"))
	if files, _ := filepath.Glob("testdata/meta-integrity-*"); len(files) > 0 {
		for _, p := range files {
			if data, err := os.ReadFile(p); err == nil {
				f.Add(data)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rules, err := Parse(data)
		if err != nil {
			return
		}
		// What parses renders back to a rule that parses to the same rule:
		// the checker has one reading of every policy it accepts.
		for _, r := range rules {
			again, err := ParseRule(r.String())
			if err != nil {
				t.Fatalf("rendered rule %q does not parse: %v", r.String(), err)
			}
			if again.String() != r.String() {
				t.Fatalf("round trip %q -> %q", r.String(), again.String())
			}
		}
	})
}
