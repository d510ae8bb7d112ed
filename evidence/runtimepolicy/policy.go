package runtimepolicy

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// Keylime's RUNTIME_POLICY_GENERATOR values.
const (
	GeneratorUnknown             = 0
	GeneratorEmptyAllowList      = 1
	GeneratorCompatibleAllowList = 2
	GeneratorLegacyAllowList     = 3
)

// CurrentVersion is Keylime's RUNTIME_POLICY_CURRENT_VERSION.
const CurrentVersion = 1

// Meta is the policy's "meta" object.
type Meta struct {
	Version   int    `json:"version"`
	Generator int    `json:"generator"`
	Timestamp string `json:"timestamp,omitempty"`
}

// IMAOptions is the policy's "ima" object.
type IMAOptions struct {
	IgnoredKeyrings []string `json:"ignored_keyrings"`
	LogHashAlg      string   `json:"log_hash_alg"`
	// DMPolicy must be null (Keylime's schema allows nothing else).
	DMPolicy json.RawMessage `json:"dm_policy"`
}

// Policy is a Keylime runtime policy.
type Policy struct {
	Meta             Meta                `json:"meta"`
	Release          int                 `json:"release"`
	Digests          map[string][]string `json:"digests"`
	Excludes         []string            `json:"excludes"`
	Keyrings         map[string][]string `json:"keyrings"`
	IMA              IMAOptions          `json:"ima"`
	IMABuf           map[string][]string `json:"ima-buf"`
	VerificationKeys string              `json:"verification-keys"`

	excludeRE []compiledExclude
}

// compiledExclude is one exclude pattern, compiled. prefix is a literal
// every match must start with (from the pattern's program, as regexp
// itself uses it), so a path without it is not run through the regexp;
// literal means the pattern is that literal alone, so the prefix test is
// the whole match.
type compiledExclude struct {
	re      *regexp.Regexp
	prefix  string
	literal bool
}

// Empty returns Keylime's EMPTY_RUNTIME_POLICY.
func Empty() *Policy {
	return &Policy{
		Meta:     Meta{Version: CurrentVersion, Generator: GeneratorEmptyAllowList},
		Digests:  map[string][]string{},
		Excludes: []string{},
		Keyrings: map[string][]string{},
		IMA:      IMAOptions{IgnoredKeyrings: []string{}, LogHashAlg: "sha1"},
		IMABuf:   map[string][]string{},
	}
}

//go:embed schema.json
var schemaJSON []byte

var (
	schemaOnce sync.Once
	schema     *jsonschema.Schema
	schemaErr  error
)

func compiledSchema() (*jsonschema.Schema, error) {
	schemaOnce.Do(func() {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schemaJSON))
		if err != nil {
			schemaErr = fmt.Errorf("runtimepolicy: embedded schema: %w", err)
			return
		}
		c := jsonschema.NewCompiler()
		if err := c.AddResource("keylime-runtime-policy.json", doc); err != nil {
			schemaErr = fmt.Errorf("runtimepolicy: embedded schema: %w", err)
			return
		}
		schema, schemaErr = c.Compile("keylime-runtime-policy.json")
	})
	return schema, schemaErr
}

// ErrInvalid is wrapped by every error Parse returns for a bad policy.
var ErrInvalid = errors.New("invalid runtime policy")

// Parse reads a Keylime runtime policy, validates it against Keylime's
// schema and compiles its exclude list. Exclude patterns are Python
// regexes matched at the start of the path; patterns RE2 cannot express
// (look-around, back-references) are rejected rather than mis-evaluated.
func Parse(data []byte) (*Policy, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%w: empty input", ErrInvalid)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: not JSON: %v", ErrInvalid, err)
	}
	sch, err := compiledSchema()
	if err != nil {
		return nil, err
	}
	if err := sch.Validate(inst); err != nil {
		return nil, fmt.Errorf("%w: schema: %s", ErrInvalid, schemaMessage(err))
	}
	p := &Policy{}
	if err := json.Unmarshal(data, p); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := p.compile(); err != nil {
		return nil, err
	}
	return p, nil
}

// schemaMessage flattens a validation error to "at /digests/x/0: ..." lines.
func schemaMessage(err error) string {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return err.Error()
	}
	pr := message.NewPrinter(language.English)
	var leaves []string
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			loc := "/" + strings.Join(e.InstanceLocation, "/")
			leaves = append(leaves, fmt.Sprintf("at %q: %s", loc, e.ErrorKind.LocalizedString(pr)))
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	if len(leaves) > 5 {
		leaves = append(leaves[:5], fmt.Sprintf("and %d more", len(leaves)-5))
	}
	return strings.Join(leaves, "; ")
}

func (p *Policy) compile() error {
	p.excludeRE = p.excludeRE[:0]
	for i, ex := range p.Excludes {
		re, err := regexp.Compile(`^(?:` + ex + `)`)
		if err != nil {
			return fmt.Errorf("%w: excludes[%d] %q is not a regex RE2 can evaluate: %v", ErrInvalid, i, ex, err)
		}
		prefix, literal := literalPrefix(ex)
		p.excludeRE = append(p.excludeRE, compiledExclude{re: re, prefix: prefix, literal: literal})
	}
	return nil
}

// literalPrefix returns the literal every match of ex must start with,
// and whether ex matches exactly that literal, from ex's program compiled
// as regexp.Compile compiles it (Perl syntax, simplified). Anchored at the
// start of the path, as excludes are, a path matches only if it starts
// with the prefix, and a literal pattern matches exactly the paths that
// do. Anything syntax cannot analyse gets no prefix (always run).
func literalPrefix(ex string) (string, bool) {
	re, err := syntax.Parse(`(?:`+ex+`)`, syntax.Perl)
	if err != nil {
		return "", false
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return "", false
	}
	return prog.Prefix()
}

// Excluded reports whether path matches one of the policy's excludes.
func (p *Policy) Excluded(path string) bool {
	if len(p.excludeRE) != len(p.Excludes) {
		if err := p.compile(); err != nil {
			return false
		}
	}
	for i := range p.excludeRE {
		ex := &p.excludeRE[i]
		if !strings.HasPrefix(path, ex.prefix) {
			continue
		}
		if ex.literal || ex.re.MatchString(path) {
			return true
		}
	}
	return false
}

// Marshal writes the policy as JSON (map keys sorted).
func (p *Policy) Marshal() ([]byte, error) {
	q := *p
	if q.IMA.DMPolicy == nil {
		q.IMA.DMPolicy = json.RawMessage("null")
	}
	for _, m := range []*map[string][]string{&q.Digests, &q.Keyrings, &q.IMABuf} {
		if *m == nil {
			*m = map[string][]string{}
		}
	}
	if q.Excludes == nil {
		q.Excludes = []string{}
	}
	if q.IMA.IgnoredKeyrings == nil {
		q.IMA.IgnoredKeyrings = []string{}
	}
	return json.MarshalIndent(&q, "", "  ")
}
