package yocto

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
)

// bbAssign is one variable assignment of a bitbake file.
type bbAssign struct {
	Op, Value string
	Export    bool
	Line      int
}

// bbFile is what the layer checks need of a .bb, .bbappend, .bbclass or
// .conf: assignments (name including :overrides and [flags]), inherits and
// requires. Function bodies are skipped.
type bbFile struct {
	Vars     map[string][]bbAssign
	Inherits []string
	Requires []string
}

// Get is the value of the first plain "=" or "?=" assignment of name.
func (f *bbFile) Get(name string) (string, bool) {
	for _, a := range f.Vars[name] {
		if a.Op == "=" || a.Op == "?=" || a.Op == "??=" || a.Op == ":=" {
			return a.Value, true
		}
	}
	return "", false
}

// All joins every assigned value of name (=, +=, :append …) with spaces.
func (f *bbFile) All(name string) string {
	var parts []string
	for _, a := range f.Vars[name] {
		parts = append(parts, a.Value)
	}
	return strings.Join(parts, " ")
}

var (
	bbAssignRE = regexp.MustCompile(`^(export\s+)?([A-Za-z0-9_${}@./+-]+(?::[A-Za-z0-9_${}.+-]+)*(?:\[[A-Za-z0-9_.-]+\])?)\s*(\?\?=|\?=|:=|\+=|=\+|\.=|=\.|=)\s*"(.*)"\s*$`)
	bbFuncRE   = regexp.MustCompile(`^(python\s*)?([A-Za-z0-9_${}:.-]+\s*)?\(\)\s*\{\s*$|^python\s+[A-Za-z0-9_]+\s*\(\)\s*\{\s*$|^python\s*\(\)\s*\{\s*$`)
)

// parseBB reads bitbake metadata the way bitbake's parser splits it:
// backslash-newline joins lines, "#" starts a comment line, a function
// runs to a line that is "}". Anything else it does not know is an error,
// so a typo in the layer fails the test instead of being ignored.
func parseBB(data string) (*bbFile, error) {
	f := &bbFile{Vars: map[string][]bbAssign{}}
	lines := strings.Split(data, "\n")
	for i := 0; i < len(lines); i++ {
		n := i + 1
		line := lines[i]
		for strings.HasSuffix(line, "\\") && i+1 < len(lines) {
			i++
			line = strings.TrimSuffix(line, "\\") + lines[i]
		}
		s := strings.TrimSpace(line)
		switch {
		case s == "" || strings.HasPrefix(s, "#"):
		case bbFuncRE.MatchString(s):
			for i+1 < len(lines) && strings.TrimRight(lines[i+1], " \t") != "}" {
				i++
			}
			if i+1 >= len(lines) {
				return nil, fmt.Errorf("line %d: function without closing }", n)
			}
			i++
		case strings.HasPrefix(s, "inherit "):
			f.Inherits = append(f.Inherits, strings.Fields(s)[1:]...)
		case strings.HasPrefix(s, "require ") || strings.HasPrefix(s, "include "):
			f.Requires = append(f.Requires, strings.Fields(s)[1:]...)
		case strings.HasPrefix(s, "addtask ") || strings.HasPrefix(s, "EXPORT_FUNCTIONS "):
		default:
			m := bbAssignRE.FindStringSubmatch(s)
			if m == nil {
				return nil, fmt.Errorf("line %d: not an assignment, inherit, require or function: %q", n, s)
			}
			if strings.Contains(m[4], `"`) && !strings.Contains(m[4], `\"`) && !strings.Contains(m[4], "${@") {
				return nil, fmt.Errorf("line %d: unbalanced quotes in %q", n, s)
			}
			f.Vars[m[2]] = append(f.Vars[m[2]], bbAssign{Op: m[3], Value: strings.Join(strings.Fields(m[4]), " "), Export: m[1] != "", Line: n})
		}
	}
	return f, nil
}

func readBB(t *testing.T, path string) *bbFile {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := parseBB(string(data))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return f
}

func TestParseBB(t *testing.T) {
	f, err := parseBB("# c\nA = \"x \\\n   y\"\nexport B ?= \"1\"\nC:append:pn-x = \" z\"\nD[doc] = \"d\"\ninherit go-mod systemd\nrequire a.inc\n" +
		"do_install() {\n    A = \"not a var\"\n}\npython () {\n    x = 1\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := f.Get("A"); v != "x y" {
		t.Errorf("A = %q", v)
	}
	if a := f.Vars["B"]; len(a) != 1 || !a[0].Export || a[0].Op != "?=" {
		t.Errorf("B = %+v", a)
	}
	if f.All("C:append:pn-x") != "z" || f.All("D[doc]") != "d" {
		t.Errorf("vars = %+v", f.Vars)
	}
	if strings.Join(f.Inherits, ",") != "go-mod,systemd" || strings.Join(f.Requires, ",") != "a.inc" {
		t.Errorf("inherits %v requires %v", f.Inherits, f.Requires)
	}
	for _, bad := range []string{"A == \"x\"\n", "A = x\n", "do_install() {\n  x\n", "A = \"x\" y\"\n"} {
		if _, err := parseBB(bad); err == nil {
			t.Errorf("parseBB(%q) accepted", bad)
		}
	}
}

func FuzzParseBB(f *testing.F) {
	for _, p := range []string{
		"meta-ratatouille/conf/layer.conf",
		"meta-ratatouille/recipes-security/rat-agent/rat-agent_git.bb",
		"meta-ratatouille/recipes-security/rat-agent/rat-agent-go-mods.inc",
	} {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(string(data))
		}
	}
	f.Add("A = \"b\"\nfoo() {\n}\n")
	f.Fuzz(func(t *testing.T, data string) {
		bf, err := parseBB(data)
		if err != nil {
			return
		}
		for name, as := range bf.Vars {
			if name == "" || len(as) == 0 {
				t.Fatalf("empty variable entry %q %v", name, as)
			}
		}
	})
}
