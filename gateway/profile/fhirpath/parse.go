// Package fhirpath evaluates the subset of FHIRPath (hl7.org/fhirpath, N1)
// that StructureDefinition constraints use: paths with choice elements
// (value resolves valueQuantity, valueString, ...), $this, %resource,
// literals, the boolean operators with FHIRPath's three-valued logic
// (and, or, xor, implies), equality and comparison, is/as, union, and the
// functions empty, exists, not, where, all, count, first, last, hasValue,
// toString, length, ofType, startsWith, endsWith, matches and iif.
// Anything else is a parse error, so a constraint this package cannot
// evaluate is found when it is compiled, never skipped silently.
//
// Values are decoded JSON (map[string]any, []any, string, json.Number or
// float64, bool). A value knows its FHIR type when its element name says
// it (a choice element) or the caller gives it.
package fhirpath

import (
	"fmt"
	"strings"
	"unicode"
)

// Expr is a compiled FHIRPath expression; it is safe for concurrent use.
type Expr struct {
	src  string
	root node
}

// String returns the expression's source.
func (e *Expr) String() string { return e.src }

// node is one node of the syntax tree.
type node interface{}

type (
	// literal is a string, number or boolean literal, or {} (empty).
	literal struct{ items []Item }
	// thisRef is $this.
	thisRef struct{}
	// envRef is %name (only %resource and %rootResource are known).
	envRef struct{ name string }
	// member navigates to a child element of every item of from (nil: the
	// focus).
	member struct {
		from node
		name string
	}
	// call is a function invoked on the result of from (nil: the focus).
	call struct {
		from node
		fn   function
		args []node
	}
	// index is from[i].
	index struct{ from, at node }
	// binary is an operator.
	binary struct {
		op          string
		left, right node
	}
	// typeOp is "x is T" or "x as T".
	typeOp struct {
		op   string
		from node
		typ  string
	}
	// negate is unary minus.
	negate struct{ of node }
)

// Parse compiles an expression. Returns an error naming the position of
// anything outside the supported subset.
func Parse(src string) (*Expr, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks, src: src}
	n, err := p.expr(0)
	if err != nil {
		return nil, err
	}
	if p.peek().kind != tEOF {
		return nil, p.errorf("unexpected %q", p.peek().text)
	}
	return &Expr{src: src, root: n}, nil
}

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tString
	tNumber
	tOp
	tEnv     // %name
	tSpecial // $this
)

type token struct {
	kind tokKind
	text string
	pos  int
}

func lex(src string) ([]token, error) {
	var out []token
	i := 0
	for i < len(src) {
		c := rune(src[i])
		switch {
		case unicode.IsSpace(c):
			i++
		case c == '\'':
			s, n, err := lexString(src, i)
			if err != nil {
				return nil, err
			}
			out = append(out, token{tString, s, i})
			i = n
		case c == '`':
			end := strings.IndexByte(src[i+1:], '`')
			if end < 0 {
				return nil, fmt.Errorf("fhirpath: unterminated identifier at %d", i)
			}
			out = append(out, token{tIdent, src[i+1 : i+1+end], i})
			i += end + 2
		case c >= '0' && c <= '9':
			j := i
			for j < len(src) && (src[j] >= '0' && src[j] <= '9' || src[j] == '.' && j+1 < len(src) && src[j+1] >= '0' && src[j+1] <= '9') {
				j++
			}
			out = append(out, token{tNumber, src[i:j], i})
			i = j
		case c == '%' || c == '$':
			j := i + 1
			for j < len(src) && isIdentChar(rune(src[j])) {
				j++
			}
			if j == i+1 {
				return nil, fmt.Errorf("fhirpath: bad %c at %d", c, i)
			}
			kind := tEnv
			if c == '$' {
				kind = tSpecial
			}
			out = append(out, token{kind, src[i+1 : j], i})
			i = j
		case isIdentChar(c):
			j := i
			for j < len(src) && isIdentChar(rune(src[j])) {
				j++
			}
			out = append(out, token{tIdent, src[i:j], i})
			i = j
		default:
			op := ""
			for _, o := range []string{"!=", "!~", "<=", ">=", "=", "~", "<", ">", "|", "+", "-", "&", "*", "/", ".", "(", ")", "[", "]", ",", "{", "}"} {
				if strings.HasPrefix(src[i:], o) {
					op = o
					break
				}
			}
			if op == "" {
				return nil, fmt.Errorf("fhirpath: unexpected %q at %d", c, i)
			}
			out = append(out, token{tOp, op, i})
			i += len(op)
		}
	}
	return append(out, token{tEOF, "", len(src)}), nil
}

func isIdentChar(c rune) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func lexString(src string, i int) (string, int, error) {
	var b strings.Builder
	for j := i + 1; j < len(src); j++ {
		switch src[j] {
		case '\'':
			return b.String(), j + 1, nil
		case '\\':
			j++
			if j >= len(src) {
				break
			}
			switch src[j] {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			default:
				b.WriteByte(src[j])
			}
		default:
			b.WriteByte(src[j])
		}
	}
	return "", 0, fmt.Errorf("fhirpath: unterminated string at %d", i)
}

type parser struct {
	toks []token
	i    int
	src  string
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) next() token { t := p.toks[p.i]; p.i++; return t }

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("fhirpath: %s at %d in %q", fmt.Sprintf(format, args...), p.peek().pos, p.src)
}

func (p *parser) isOp(text string) bool {
	t := p.peek()
	return t.kind == tOp && t.text == text
}

func (p *parser) expect(text string) error {
	if !p.isOp(text) {
		return p.errorf("expected %q", text)
	}
	p.i++
	return nil
}

// Binary operators by precedence level, lowest first (FHIRPath §6.7).
var levels = [][]string{
	{"implies"},
	{"or", "xor"},
	{"and"},
	{"in", "contains"},
	{"=", "~", "!=", "!~"},
	{"<", ">", "<=", ">="},
	{"|"},
	{"is", "as"},
	{"+", "-", "&"},
	{"*", "/", "div", "mod"},
}

// binOp returns the operator at the current token if it is one of level's.
func (p *parser) binOp(level int) string {
	t := p.peek()
	if t.kind != tOp && t.kind != tIdent {
		return ""
	}
	for _, op := range levels[level] {
		if t.text == op {
			return op
		}
	}
	return ""
}

func (p *parser) expr(level int) (node, error) {
	if level == len(levels) {
		return p.unary()
	}
	left, err := p.expr(level + 1)
	if err != nil {
		return nil, err
	}
	for {
		op := p.binOp(level)
		if op == "" {
			return left, nil
		}
		p.i++
		switch op {
		case "is", "as":
			typ, err := p.typeName()
			if err != nil {
				return nil, err
			}
			left = typeOp{op: op, from: left, typ: typ}
			continue
		case "in", "contains", "~", "!~", "*", "/", "div", "mod":
			return nil, p.errorf("operator %q is not supported", op)
		}
		right, err := p.expr(level + 1)
		if err != nil {
			return nil, err
		}
		left = binary{op: op, left: left, right: right}
	}
}

// typeName reads a (possibly qualified) type name.
func (p *parser) typeName() (string, error) {
	t := p.next()
	if t.kind != tIdent {
		return "", p.errorf("expected a type name")
	}
	name := t.text
	if p.isOp(".") && p.toks[p.i+1].kind == tIdent {
		p.i++
		name += "." + p.next().text
	}
	return name, nil
}

func (p *parser) unary() (node, error) {
	if p.isOp("-") {
		p.i++
		n, err := p.unary()
		return negate{n}, err
	}
	if p.isOp("+") {
		p.i++
	}
	return p.invocation()
}

func (p *parser) invocation() (node, error) {
	n, err := p.term()
	if err != nil {
		return nil, err
	}
	for {
		switch {
		case p.isOp("."):
			p.i++
			t := p.next()
			if t.kind != tIdent {
				return nil, p.errorf("expected a name after '.'")
			}
			if n, err = p.callOrMember(n, t.text); err != nil {
				return nil, err
			}
		case p.isOp("["):
			p.i++
			at, err := p.expr(0)
			if err != nil {
				return nil, err
			}
			if err := p.expect("]"); err != nil {
				return nil, err
			}
			n = index{from: n, at: at}
		default:
			return n, nil
		}
	}
}

func (p *parser) callOrMember(from node, name string) (node, error) {
	if !p.isOp("(") {
		return member{from: from, name: name}, nil
	}
	p.i++
	var args []node
	for !p.isOp(")") {
		if len(args) > 0 {
			if err := p.expect(","); err != nil {
				return nil, err
			}
		}
		var a node
		var err error
		if name == "ofType" || name == "is" || name == "as" {
			var typ string
			typ, err = p.typeName()
			a = literal{items: []Item{{V: typ}}}
		} else {
			a, err = p.expr(0)
		}
		if err != nil {
			return nil, err
		}
		args = append(args, a)
	}
	p.i++
	f, ok := builtin(name)
	if !ok {
		return nil, p.errorf("function %s() is not supported", name)
	}
	if len(args) < f.minArgs || len(args) > f.maxArgs {
		return nil, p.errorf("%s() takes %d to %d arguments", name, f.minArgs, f.maxArgs)
	}
	return call{from: from, fn: f, args: args}, nil
}

func (p *parser) term() (node, error) {
	t := p.next()
	switch t.kind {
	case tString:
		return literal{items: []Item{{V: t.text, T: "String"}}}, nil
	case tNumber:
		return literal{items: []Item{{V: number(t.text), T: numberType(t.text)}}}, nil
	case tSpecial:
		if t.text != "this" {
			return nil, fmt.Errorf("fhirpath: $%s is not supported in %q", t.text, p.src)
		}
		return thisRef{}, nil
	case tEnv:
		if t.text != "resource" && t.text != "rootResource" {
			return nil, fmt.Errorf("fhirpath: %%%s is not supported in %q", t.text, p.src)
		}
		return envRef{name: t.text}, nil
	case tIdent:
		switch t.text {
		case "true", "false":
			return literal{items: []Item{{V: t.text == "true", T: "Boolean"}}}, nil
		}
		return p.callOrMember(nil, t.text)
	case tOp:
		switch t.text {
		case "(":
			n, err := p.expr(0)
			if err != nil {
				return nil, err
			}
			return n, p.expect(")")
		case "{":
			return literal{}, p.expect("}")
		}
	}
	p.i--
	return nil, p.errorf("unexpected %q", t.text)
}
