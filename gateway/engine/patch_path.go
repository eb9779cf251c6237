package engine

import (
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The paths of a FHIRPath Patch: the subset of FHIRPath that selects
// elements of the resource being patched, by position or by value, as
// fhirpatch.html's examples and real clients write them:
//
//	Patient.name[0].given
//	Observation.component.last().code
//	Patient.identifier.where(system='http://hospital.example/mrn').value
//	Patient.telecom.where(system='phone' and use='home')
//	Observation.component.where(code.coding.code='8480-6').valueQuantity.value
//	Patient.name.given.where($this='Ann')
//
// A path is the resource type, then element names, each optionally
// followed by [n] (0-based), first(), last() or where(criteria). Criteria
// are equalities joined by "and"; each compares a relative path (element
// names with the same suffixes, or $this) with a literal: a 'string' (with
// FHIRPath's escapes), true, false, an integer or a decimal. As FHIRPath
// defines "=", an equality holds when the relative path selects exactly
// one value equal to the literal (decimals by value: 1.0 = 1). Anything
// else (other functions, operators, parentheses) is refused with
// patchPathSubset, which says exactly this.

// patchPathSubset describes the supported paths, for the error that
// refuses another.
const patchPathSubset = "a path is the resource type, then element names, each optionally followed by [n], first(), last() " +
	"or where(criteria); criteria are equalities path = literal joined by and, where path is $this or element names " +
	"with the same optional suffixes, and literal is a 'string', true, false, an integer or a decimal " +
	"(e.g. Patient.identifier.where(system='http://example.org/mrn').value, Patient.telecom.where(system='email' and use='work'))"

// Bounds of a path, so that a hostile one costs little to parse and run.
const (
	maxPathLen   = 4096
	maxPathDepth = 4 // where() within where()
)

// opKind is what one step of a path does to the collection it is given.
type opKind int

const (
	opMember opKind = iota // the values of an element of each item
	opIndex                // item n
	opFirst                // the first item
	opLast                 // the last item
	opWhere                // the items the criteria hold for
)

// pathOp is one step of a path.
type pathOp struct {
	kind  opKind
	name  string     // opMember: the element name
	n     int        // opIndex
	where []equality // opWhere: every one must hold
}

// equality is one criterion of where(): path = lit.
type equality struct {
	path []pathOp // relative to the item; empty for $this
	lit  literal
}

// literal is a FHIRPath literal: a string, a boolean or a number.
type literal struct {
	str  *string
	bool *bool
	num  *big.Rat
}

// patchPath is a parsed path: its steps below the resource.
type patchPath []pathOp

// members are the element names of the path's member steps (the element
// definition a path reaches, where() and indexes aside).
func (p patchPath) members() []string {
	var out []string
	for _, op := range p {
		if op.kind == opMember {
			out = append(out, op.name)
		}
	}
	return out
}

// keys are the JSON keys the member steps of p take in doc, where p
// selects something there: a choice element named by its base name
// ("value") is the key it has in doc ("valueQuantity"), so its type's
// elements can be found (members where a step selects nothing).
func (p patchPath) keys(doc map[string]any) []string {
	var out []string
	for i, op := range p {
		if op.kind != opMember {
			continue
		}
		key := op.name
		if ns := resolvePath(doc, p[:i+1]); len(ns) > 0 {
			key = ns[0].key
		}
		out = append(out, key)
	}
	return out
}

// pathError says where a path leaves the supported subset: a character
// offset and what was found there (never the path's text, which may carry
// a value from a record).
type pathError struct {
	at   int
	what string
}

func (e *pathError) Error() string {
	return fmt.Sprintf("at character %d, %s", e.at+1, e.what)
}

// parsePatchPath reads a path of a resource of typ.
func parsePatchPath(typ, path string) (patchPath, error) {
	if len(path) > maxPathLen {
		return nil, &pathError{maxPathLen, fmt.Sprintf("the path is longer than %d characters", maxPathLen)}
	}
	p := &pathParser{s: path}
	p.space()
	start := p.i
	if name, ok := p.ident(); !ok || name != typ {
		return nil, &pathError{start, "the path does not start with the resource type"}
	}
	ops, err := p.steps(0)
	if err != nil {
		return nil, err
	}
	if p.space(); p.i < len(p.s) {
		return nil, p.errorf("something other than .name, [n], .first(), .last() or .where(...)")
	}
	if len(ops) > 0 && ops[0].kind != opMember {
		return nil, &pathError{start, "a function or index applied to the resource itself; name an element first"}
	}
	return ops, nil
}

// pathParser reads a path: s, from offset i.
type pathParser struct {
	s string
	i int
}

func (p *pathParser) errorf(format string, args ...any) error {
	return &pathError{p.i, fmt.Sprintf(format, args...)}
}

// space skips FHIRPath whitespace.
func (p *pathParser) space() {
	for p.i < len(p.s) && strings.IndexByte(" \t\r\n", p.s[p.i]) >= 0 {
		p.i++
	}
}

// peek reports whether the next token starts with tok, after whitespace.
func (p *pathParser) peek(tok string) bool {
	p.space()
	return strings.HasPrefix(p.s[p.i:], tok)
}

// ident reads an identifier ([A-Za-z_][A-Za-z0-9_]*).
func (p *pathParser) ident() (string, bool) {
	j := p.i
	for j < len(p.s) {
		c := p.s[j]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || j > p.i && c >= '0' && c <= '9') {
			break
		}
		j++
	}
	if j == p.i {
		return "", false
	}
	name := p.s[p.i:j]
	p.i = j
	return name, true
}

// steps reads the steps that follow a term: .name, .function(...), [n].
func (p *pathParser) steps(depth int) ([]pathOp, error) {
	var ops []pathOp
	for {
		switch {
		case p.peek("."):
			p.i++
			p.space()
			op, err := p.invocation(depth)
			if err != nil {
				return nil, err
			}
			ops = append(ops, op)
		case p.peek("["):
			p.i++
			op, err := p.index()
			if err != nil {
				return nil, err
			}
			ops = append(ops, op)
		default:
			return ops, nil
		}
	}
}

// invocation reads an element name or a supported function call.
func (p *pathParser) invocation(depth int) (pathOp, error) {
	at := p.i
	name, ok := p.ident()
	if !ok {
		return pathOp{}, p.errorf("something other than an element name or first(), last() or where(...) after a dot")
	}
	if !p.peek("(") {
		return pathOp{kind: opMember, name: name}, nil
	}
	p.i++
	switch name {
	case "first", "last":
		if !p.peek(")") {
			return pathOp{}, p.errorf("%s() takes no arguments", name)
		}
		p.i++
		if name == "first" {
			return pathOp{kind: opFirst}, nil
		}
		return pathOp{kind: opLast}, nil
	case "where":
		if depth >= maxPathDepth {
			return pathOp{}, &pathError{at, fmt.Sprintf("where() nested more than %d deep", maxPathDepth)}
		}
		crit, err := p.criteria(depth + 1)
		if err != nil {
			return pathOp{}, err
		}
		if !p.peek(")") {
			return pathOp{}, p.errorf("something other than and or ) after a criterion of where()")
		}
		p.i++
		return pathOp{kind: opWhere, where: crit}, nil
	}
	return pathOp{}, &pathError{at, "a function other than first(), last() and where()"}
}

// index reads the rest of [n].
func (p *pathParser) index() (pathOp, error) {
	p.space()
	j := p.i
	for j < len(p.s) && p.s[j] >= '0' && p.s[j] <= '9' {
		j++
	}
	n, err := strconv.Atoi(p.s[p.i:j])
	if j == p.i || err != nil || n > maxPathLen {
		return pathOp{}, p.errorf("an index other than a non-negative integer")
	}
	p.i = j
	if !p.peek("]") {
		return pathOp{}, p.errorf("an index other than a non-negative integer")
	}
	p.i++
	return pathOp{kind: opIndex, n: n}, nil
}

// criteria reads equality ("and" equality)*.
func (p *pathParser) criteria(depth int) ([]equality, error) {
	var out []equality
	for {
		eq, err := p.equality(depth)
		if err != nil {
			return nil, err
		}
		out = append(out, eq)
		p.space()
		save := p.i
		if w, ok := p.ident(); ok && w == "and" {
			continue
		}
		p.i = save
		return out, nil
	}
}

// equality reads path = literal (or literal = path).
func (p *pathParser) equality(depth int) (equality, error) {
	p.space()
	var eq equality
	if lit, ok, err := p.literal(); err != nil {
		return eq, err
	} else if ok {
		if err := p.equals(); err != nil {
			return eq, err
		}
		path, err := p.relative(depth)
		if err != nil {
			return eq, err
		}
		return equality{path: path, lit: lit}, nil
	}
	path, err := p.relative(depth)
	if err != nil {
		return eq, err
	}
	if err := p.equals(); err != nil {
		return eq, err
	}
	p.space()
	lit, ok, err := p.literal()
	if err != nil {
		return eq, err
	}
	if !ok {
		return eq, p.errorf("something other than a literal ('string', true, false, a number) after =")
	}
	return equality{path: path, lit: lit}, nil
}

// equals reads the "=" of an equality.
func (p *pathParser) equals() error {
	if !p.peek("=") {
		return p.errorf("an operator other than = in where()")
	}
	p.i++
	return nil
}

// relative reads a path inside where(): $this, or an element name or
// function, then steps.
func (p *pathParser) relative(depth int) ([]pathOp, error) {
	p.space()
	if strings.HasPrefix(p.s[p.i:], "$this") {
		p.i += len("$this")
		return p.steps(depth)
	}
	if p.i >= len(p.s) || !(p.s[p.i] == '_' || p.s[p.i] >= 'a' && p.s[p.i] <= 'z' || p.s[p.i] >= 'A' && p.s[p.i] <= 'Z') {
		return nil, p.errorf("something other than path = literal in where()")
	}
	first, err := p.invocation(depth)
	if err != nil {
		return nil, err
	}
	rest, err := p.steps(depth)
	if err != nil {
		return nil, err
	}
	return append([]pathOp{first}, rest...), nil
}

// literal reads a string, boolean or number literal; ok is false (and
// nothing read) when none starts here.
func (p *pathParser) literal() (literal, bool, error) {
	if p.i >= len(p.s) {
		return literal{}, false, nil
	}
	switch c := p.s[p.i]; {
	case c == '\'':
		s, err := p.str()
		return literal{str: &s}, err == nil, err
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	}
	save := p.i
	if w, ok := p.ident(); ok && (w == "true" || w == "false") && !p.peek(".") && !p.peek("[") && !p.peek("(") {
		b := w == "true"
		return literal{bool: &b}, true, nil
	}
	p.i = save
	return literal{}, false, nil
}

// number reads [-]digits[.digits].
func (p *pathParser) number() (literal, bool, error) {
	j := p.i
	if p.s[j] == '-' {
		j++
	}
	digits := func() int {
		k := j
		for j < len(p.s) && p.s[j] >= '0' && p.s[j] <= '9' {
			j++
		}
		return j - k
	}
	if digits() == 0 {
		return literal{}, false, p.errorf("a number without digits")
	}
	if j < len(p.s) && p.s[j] == '.' {
		j++
		if digits() == 0 {
			return literal{}, false, &pathError{j, "a decimal without digits after the point"}
		}
	}
	if j-p.i > 64 {
		return literal{}, false, p.errorf("a number of more than 64 characters")
	}
	r, ok := new(big.Rat).SetString(p.s[p.i:j])
	if !ok {
		return literal{}, false, p.errorf("a number that is not an integer or decimal literal")
	}
	p.i = j
	return literal{num: r}, true, nil
}

// str reads a FHIRPath string literal: '...' with the escapes \' \" \`
// \\ \/ \f \n \r \t \uXXXX.
func (p *pathParser) str() (string, error) {
	start := p.i
	var b strings.Builder
	for j := p.i + 1; j < len(p.s); {
		c := p.s[j]
		switch c {
		case '\'':
			p.i = j + 1
			return b.String(), nil
		case '\\':
			if j+1 >= len(p.s) {
				return "", &pathError{start, "a string that is not closed"}
			}
			e := p.s[j+1]
			j += 2
			switch e {
			case '\'', '"', '`', '\\', '/':
				b.WriteByte(e)
			case 'f':
				b.WriteByte('\f')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'u':
				if j+4 > len(p.s) {
					return "", &pathError{j - 2, "a \\u escape without four hexadecimal digits"}
				}
				n, err := strconv.ParseUint(p.s[j:j+4], 16, 16)
				if err != nil {
					return "", &pathError{j - 2, "a \\u escape without four hexadecimal digits"}
				}
				b.WriteRune(rune(n))
				j += 4
			default:
				return "", &pathError{j - 2, "an escape other than \\' \\\" \\` \\\\ \\/ \\f \\n \\r \\t and \\uXXXX"}
			}
		default:
			r, size := utf8.DecodeRuneInString(p.s[j:])
			if r == utf8.RuneError && size == 1 {
				return "", &pathError{j, "a string that is not UTF-8"}
			}
			b.WriteRune(r)
			j += size
		}
	}
	return "", &pathError{start, "a string that is not closed"}
}

// resolvePath evaluates a path from doc: the slots of the nodes it selects.
func resolvePath(doc map[string]any, ops []pathOp) []node {
	return evaluate([]node{{container: map[string]any{"": doc}, key: "", item: -1}}, ops)
}

// evaluate applies ops, in order, to the collection cur.
func evaluate(cur []node, ops []pathOp) []node {
	for _, op := range ops {
		switch op.kind {
		case opMember:
			var next []node
			for _, s := range cur {
				m, ok := s.get().(map[string]any)
				if !ok {
					continue
				}
				key := memberKey(m, op.name)
				switch v := m[key].(type) {
				case nil:
				case []any:
					for i := range v {
						next = append(next, node{m, key, i})
					}
				default:
					next = append(next, node{m, key, -1})
				}
			}
			cur = next
		case opIndex:
			if op.n >= len(cur) {
				return nil
			}
			cur = cur[op.n : op.n+1]
		case opFirst:
			if len(cur) > 1 {
				cur = cur[:1]
			}
		case opLast:
			if len(cur) > 1 {
				cur = cur[len(cur)-1:]
			}
		case opWhere:
			var next []node
			for _, s := range cur {
				if holds(s.get(), op.where) {
					next = append(next, s)
				}
			}
			cur = next
		}
		if len(cur) == 0 {
			return nil
		}
	}
	return cur
}

// holds reports whether every equality holds for item.
func holds(item any, crit []equality) bool {
	for _, eq := range crit {
		vals := evaluate([]node{{container: map[string]any{"": item}, key: "", item: -1}}, eq.path)
		if len(vals) != 1 || !eq.lit.equals(vals[0].get()) {
			return false
		}
	}
	return true
}

// equals reports whether the JSON value v equals the literal: a string
// (string, code, uri, id, date ...) the string, a boolean the boolean, a
// number (integer, decimal) the number by value.
func (l literal) equals(v any) bool {
	switch x := v.(type) {
	case string:
		return l.str != nil && *l.str == x
	case bool:
		return l.bool != nil && *l.bool == x
	case json.Number:
		if l.num == nil {
			return false
		}
		r, ok := ratOf(string(x))
		return ok && r.Cmp(l.num) == 0
	}
	return false
}

// ratOf reads a JSON number exactly; one whose exponent would make it
// costly to expand (beyond what an R4 decimal holds) is not read.
func ratOf(s string) (*big.Rat, bool) {
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		exp, err := strconv.Atoi(strings.TrimPrefix(s[i+1:], "+"))
		if err != nil || exp > 1000 || exp < -1000 {
			return nil, false
		}
	}
	return new(big.Rat).SetString(s)
}
