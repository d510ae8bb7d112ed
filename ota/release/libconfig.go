package release

import (
	"fmt"
	"strings"
)

// maxNesting bounds libconfig group/list nesting (real sw-descriptions
// nest four or five deep) so hostile input cannot exhaust the stack.
const maxNesting = 32

// parseLibconfig reads libconfig syntax, the format of SWUpdate's
// sw-description, into groups (map[string]any), arrays and lists
// ([]any) and scalars (string for strings and numbers, bool). It also
// accepts the JSON form SWUpdate reads ("name": value, an outer {}).
func parseLibconfig(src string) (map[string]any, error) {
	p := &lcParser{s: src}
	p.skip()
	outer := p.peek() == '{'
	if outer {
		p.pos++
	}
	g, err := p.settings(0, outer)
	if err != nil {
		return nil, err
	}
	if outer {
		if p.peek() != '}' {
			return nil, p.errf("want '}'")
		}
		p.pos++
	}
	p.skip()
	if p.pos != len(p.s) {
		return nil, p.errf("unexpected %q", p.s[p.pos])
	}
	return g, nil
}

type lcParser struct {
	s   string
	pos int
}

func (p *lcParser) errf(format string, a ...any) error {
	line := 1 + strings.Count(p.s[:min(p.pos, len(p.s))], "\n")
	return fmt.Errorf("sw-description line %d: %s", line, fmt.Sprintf(format, a...))
}

func (p *lcParser) peek() byte {
	if p.pos < len(p.s) {
		return p.s[p.pos]
	}
	return 0
}

// skip passes whitespace and #, // and /* */ comments.
func (p *lcParser) skip() {
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			p.pos++
		case c == '#' || strings.HasPrefix(p.s[p.pos:], "//"):
			if i := strings.IndexByte(p.s[p.pos:], '\n'); i >= 0 {
				p.pos += i + 1
			} else {
				p.pos = len(p.s)
			}
		case strings.HasPrefix(p.s[p.pos:], "/*"):
			if i := strings.Index(p.s[p.pos+2:], "*/"); i >= 0 {
				p.pos += i + 4
			} else {
				p.pos = len(p.s)
			}
		default:
			return
		}
	}
}

func isNameStart(c byte) bool { return c == '*' || c == '_' || 'a' <= c|0x20 && c|0x20 <= 'z' }
func isNameChar(c byte) bool  { return isNameStart(c) || c == '-' || '0' <= c && c <= '9' }

// settings reads "name = value;" settings until '}' (inGroup) or the end.
func (p *lcParser) settings(depth int, inGroup bool) (map[string]any, error) {
	if depth > maxNesting {
		return nil, p.errf("nested deeper than %d", maxNesting)
	}
	g := map[string]any{}
	for {
		p.skip()
		c := p.peek()
		if c == 0 || (inGroup && c == '}') {
			return g, nil
		}
		var name string
		switch {
		case c == '"':
			s, err := p.str()
			if err != nil {
				return nil, err
			}
			name = s
		case isNameStart(c):
			start := p.pos
			for p.pos < len(p.s) && isNameChar(p.s[p.pos]) {
				p.pos++
			}
			name = p.s[start:p.pos]
		default:
			return nil, p.errf("want a setting name, got %q", c)
		}
		p.skip()
		if c := p.peek(); c != '=' && c != ':' {
			return nil, p.errf("want '=' or ':' after %q", name)
		}
		p.pos++
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		if _, dup := g[name]; dup {
			return nil, p.errf("setting %q repeated", name)
		}
		g[name] = v
		p.skip()
		if c := p.peek(); c == ';' || c == ',' {
			p.pos++
		}
	}
}

func (p *lcParser) value(depth int) (any, error) {
	if depth > maxNesting {
		return nil, p.errf("nested deeper than %d", maxNesting)
	}
	p.skip()
	switch c := p.peek(); c {
	case '{':
		p.pos++
		g, err := p.settings(depth, true)
		if err != nil {
			return nil, err
		}
		if p.peek() != '}' {
			return nil, p.errf("want '}'")
		}
		p.pos++
		return g, nil
	case '[', '(':
		closer := byte(']')
		if c == '(' {
			closer = ')'
		}
		p.pos++
		var out []any
		for {
			p.skip()
			if p.peek() == closer {
				p.pos++
				return out, nil
			}
			v, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
			p.skip()
			switch p.peek() {
			case ',':
				p.pos++
			case closer:
			default:
				return nil, p.errf("want ',' or %q in list", closer)
			}
		}
	case '"':
		s, err := p.str()
		if err != nil {
			return nil, err
		}
		// Adjacent string literals concatenate.
		for {
			p.skip()
			if p.peek() != '"' {
				return s, nil
			}
			more, err := p.str()
			if err != nil {
				return nil, err
			}
			s += more
		}
	case 0:
		return nil, p.errf("unexpected end")
	default:
		start := p.pos
		for p.pos < len(p.s) && (isNameChar(p.s[p.pos]) || strings.IndexByte("+.", p.s[p.pos]) >= 0) {
			p.pos++
		}
		tok := p.s[start:p.pos]
		switch strings.ToLower(tok) {
		case "":
			return nil, p.errf("want a value, got %q", c)
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
		if !('0' <= tok[0] && tok[0] <= '9' || tok[0] == '-' || tok[0] == '+' || tok[0] == '.') {
			return nil, p.errf("bad value %q", tok)
		}
		return tok, nil
	}
}

// str reads one "..." literal with libconfig's escapes.
func (p *lcParser) str() (string, error) {
	p.pos++ // opening quote
	var b strings.Builder
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		p.pos++
		switch c {
		case '"':
			return b.String(), nil
		case '\\':
			if p.pos >= len(p.s) {
				return "", p.errf("unterminated string")
			}
			e := p.s[p.pos]
			p.pos++
			switch e {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case 'f':
				b.WriteByte('\f')
			case '\\', '"', '/':
				b.WriteByte(e)
			case 'x':
				if p.pos+2 > len(p.s) {
					return "", p.errf("bad \\x escape")
				}
				var v byte
				for _, h := range []byte(p.s[p.pos : p.pos+2]) {
					switch {
					case '0' <= h && h <= '9':
						v = v<<4 | (h - '0')
					case 'a' <= h|0x20 && h|0x20 <= 'f':
						v = v<<4 | (h | 0x20 - 'a' + 10)
					default:
						return "", p.errf("bad \\x escape")
					}
				}
				p.pos += 2
				b.WriteByte(v)
			default:
				return "", p.errf("unknown escape \\%c", e)
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", p.errf("unterminated string")
}
