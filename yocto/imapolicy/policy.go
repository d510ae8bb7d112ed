package imapolicy

import (
	"fmt"
	"strconv"
	"strings"
)

// Cond is one condition or option of a rule: key, operator and value.
// Flags (permit_directio) have an empty Op and Value.
type Cond struct {
	Key   string
	Op    string // "=", "<" or ">"; "" for a flag
	Value string
}

func (c Cond) String() string { return c.Key + c.Op + c.Value }

// Rule is one policy line.
type Rule struct {
	Line   int // 1-based line in the policy file
	Action string
	Conds  []Cond
}

// Get returns the rule's condition with the key, if any.
func (r Rule) Get(key string) (Cond, bool) {
	for _, c := range r.Conds {
		if c.Key == key {
			return c, true
		}
	}
	return Cond{}, false
}

// String renders the rule the way the kernel reads it back.
func (r Rule) String() string {
	parts := []string{r.Action}
	for _, c := range r.Conds {
		parts = append(parts, c.String())
	}
	return strings.Join(parts, " ")
}

var actions = map[string]bool{
	"measure": true, "dont_measure": true, "appraise": true, "dont_appraise": true,
	"audit": true, "hash": true, "dont_hash": true,
}

var funcs = map[string]bool{
	"FILE_CHECK": true, "PATH_CHECK": true, "MODULE_CHECK": true, "FIRMWARE_CHECK": true,
	"FILE_MMAP": true, "MMAP_CHECK": true, "MMAP_CHECK_REQPROT": true, "BPRM_CHECK": true,
	"CREDS_CHECK": true, "KEXEC_KERNEL_CHECK": true, "KEXEC_INITRAMFS_CHECK": true,
	"POLICY_CHECK": true, "KEXEC_CMDLINE": true, "KEY_CHECK": true, "CRITICAL_DATA": true,
	"SETXATTR_CHECK": true,
}

var masks = map[string]bool{"MAY_EXEC": true, "MAY_WRITE": true, "MAY_READ": true, "MAY_APPEND": true}

// The kernel's built-in template descriptors (ima_template.c).
var templates = map[string]bool{
	"ima": true, "ima-ng": true, "ima-ngv2": true, "ima-sig": true, "ima-sigv2": true,
	"ima-buf": true, "ima-modsig": true, "evm-sig": true,
}

var hashAlgos = map[string]bool{
	"md4": true, "md5": true, "sha1": true, "rmd160": true, "sha256": true, "sha384": true,
	"sha512": true, "sha224": true, "rmd128": true, "rmd256": true, "rmd320": true,
	"wp256": true, "wp384": true, "wp512": true, "tgr128": true, "tgr160": true, "tgr192": true,
	"sm3": true, "streebog256": true, "streebog512": true, "sha3-256": true, "sha3-384": true, "sha3-512": true,
}

// ids are the keys with =, < and > forms, numeric ids.
var ids = map[string]bool{"uid": true, "euid": true, "gid": true, "egid": true, "fowner": true, "fgroup": true}

var lsmKeys = map[string]bool{
	"obj_user": true, "obj_role": true, "obj_type": true,
	"subj_user": true, "subj_role": true, "subj_type": true,
}

// Parse parses a whole policy. The first bad rule is an error naming its
// line, as the kernel refuses the whole policy for it.
func Parse(data []byte) ([]Rule, error) {
	var rules []Rule
	for i, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimLeft(line, " \t")
		if trimmed == "" || trimmed[0] == '#' {
			continue
		}
		r, err := ParseRule(line)
		if err != nil {
			return nil, fmt.Errorf("ima policy line %d: %w", i+1, err)
		}
		r.Line = i + 1
		rules = append(rules, r)
	}
	return rules, nil
}

// ParseRule parses one rule. Tokens are separated by spaces and tabs, as
// the kernel splits them; a '#' after a rule is not a comment to the
// kernel, so it is an unknown token here too.
func ParseRule(line string) (Rule, error) {
	if strings.ContainsAny(line, "\n\x00") {
		return Rule{}, fmt.Errorf("rule contains a newline or NUL")
	}
	toks := strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' })
	if len(toks) == 0 {
		return Rule{}, fmt.Errorf("empty rule")
	}
	r := Rule{Action: toks[0]}
	if !actions[r.Action] {
		return Rule{}, fmt.Errorf("%q is not an action (measure, dont_measure, appraise, dont_appraise, audit, hash, dont_hash)", toks[0])
	}
	seen := map[string]bool{}
	for _, tok := range toks[1:] {
		c, err := parseCond(r.Action, tok)
		if err != nil {
			return Rule{}, err
		}
		if seen[c.Key] {
			return Rule{}, fmt.Errorf("%s given twice", c.Key)
		}
		seen[c.Key] = true
		r.Conds = append(r.Conds, c)
	}
	if err := validate(r); err != nil {
		return Rule{}, err
	}
	return r, nil
}

func parseCond(action, tok string) (Cond, error) {
	if tok == "permit_directio" {
		return Cond{Key: tok}, nil
	}
	i := strings.IndexAny(tok, "=<>")
	if i <= 0 {
		if actions[tok] {
			return Cond{}, fmt.Errorf("second action %q", tok)
		}
		return Cond{}, fmt.Errorf("unknown token %q", tok)
	}
	c := Cond{Key: tok[:i], Op: tok[i : i+1], Value: tok[i+1:]}
	if c.Op != "=" && !ids[c.Key] {
		return Cond{}, fmt.Errorf("%q: only uid, euid, gid, egid, fowner, fgroup take < and >", tok)
	}
	// The kernel's match_token takes the value up to the end of the token;
	// an empty value never parses for any key.
	if c.Value == "" {
		return Cond{}, fmt.Errorf("%q: empty value", tok)
	}
	v := c.Value
	switch {
	case c.Key == "func":
		if !funcs[v] {
			return Cond{}, fmt.Errorf("func=%s: unknown hook", v)
		}
	case c.Key == "mask":
		if !masks[strings.TrimPrefix(v, "^")] {
			return Cond{}, fmt.Errorf("mask=%s: not MAY_EXEC, MAY_WRITE, MAY_READ or MAY_APPEND (optionally ^)", v)
		}
	case c.Key == "fsmagic":
		if _, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimPrefix(v, "0x"), "0X"), 16, 64); err != nil {
			return Cond{}, fmt.Errorf("fsmagic=%s: not a hex number", v)
		}
	case c.Key == "fsname":
	case c.Key == "fsuuid":
		if !isUUID(v) {
			return Cond{}, fmt.Errorf("fsuuid=%s: not a UUID", v)
		}
	case ids[c.Key]:
		if _, err := strconv.ParseUint(v, 10, 32); err != nil {
			return Cond{}, fmt.Errorf("%s: not a decimal id", tok)
		}
	case lsmKeys[c.Key]:
	case c.Key == "digest_type":
		if v != "verity" {
			return Cond{}, fmt.Errorf("digest_type=%s: only verity", v)
		}
	case c.Key == "appraise_type":
		if action != "appraise" {
			return Cond{}, fmt.Errorf("appraise_type= needs the appraise action")
		}
		if v != "imasig" && v != "imasig|modsig" && v != "sigv3" {
			return Cond{}, fmt.Errorf("appraise_type=%s: not imasig, imasig|modsig or sigv3", v)
		}
	case c.Key == "appraise_flag":
		if v != "check_blacklist" {
			return Cond{}, fmt.Errorf("appraise_flag=%s: only check_blacklist", v)
		}
	case c.Key == "appraise_algos":
		if action != "appraise" {
			return Cond{}, fmt.Errorf("appraise_algos= needs the appraise action")
		}
		for _, a := range strings.Split(v, ",") {
			if !hashAlgos[a] {
				return Cond{}, fmt.Errorf("appraise_algos: %q is not a hash algorithm", a)
			}
		}
	case c.Key == "pcr":
		if action != "measure" {
			return Cond{}, fmt.Errorf("pcr= needs the measure action")
		}
		n, err := strconv.ParseUint(v, 10, 8)
		if err != nil || n >= 64 {
			return Cond{}, fmt.Errorf("pcr=%s: not a PCR index 0..63", v)
		}
	case c.Key == "template":
		if action != "measure" {
			return Cond{}, fmt.Errorf("template= needs the measure action")
		}
		if !templates[v] {
			return Cond{}, fmt.Errorf("template=%s: not a built-in template", v)
		}
	case c.Key == "keyrings", c.Key == "label":
		for _, name := range strings.Split(v, "|") {
			if name == "" {
				return Cond{}, fmt.Errorf("%s: empty name", tok)
			}
		}
	default:
		return Cond{}, fmt.Errorf("unknown token %q", tok)
	}
	return c, nil
}

// validate applies the kernel's checks of conditions against the hook
// (ima_validate_rule): the buffer hooks take no file conditions and only
// measure actions, keyrings= belongs to KEY_CHECK, label= to CRITICAL_DATA.
func validate(r Rule) error {
	fn, _ := r.Get("func")
	switch fn.Value {
	case "KEXEC_CMDLINE", "KEY_CHECK", "CRITICAL_DATA":
		if r.Action != "measure" && r.Action != "dont_measure" {
			return fmt.Errorf("func=%s takes only measure and dont_measure", fn.Value)
		}
		for _, c := range r.Conds {
			switch c.Key {
			case "func", "uid", "gid", "pcr", "template":
			case "keyrings":
				if fn.Value != "KEY_CHECK" {
					return fmt.Errorf("keyrings= needs func=KEY_CHECK")
				}
			case "label":
				if fn.Value != "CRITICAL_DATA" {
					return fmt.Errorf("label= needs func=CRITICAL_DATA")
				}
			default:
				return fmt.Errorf("func=%s does not take %s", fn.Value, c.Key)
			}
		}
		return nil
	}
	if _, ok := r.Get("keyrings"); ok {
		return fmt.Errorf("keyrings= needs func=KEY_CHECK")
	}
	if _, ok := r.Get("label"); ok {
		return fmt.Errorf("label= needs func=CRITICAL_DATA")
	}
	return nil
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch i {
		case 8, 13, 18, 23:
			if r != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
				return false
			}
		}
	}
	return true
}
