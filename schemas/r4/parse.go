package r4

import (
	"bytes"
	"slices"
	"unicode/utf8"
)

// kind is the JSON kind of a parsed node.
type kind uint8

const (
	kNull kind = iota + 1
	kFalse
	kTrue
	kNumber
	kString
	kObject
	kArray
)

// node is one JSON value (or object key) of the parsed document. Nodes are
// stored in document order in a flat slice (a "tape"); the members of an
// object alternate key and value nodes. next points past the node's subtree,
// so siblings can be walked without recursion.
type node struct {
	start int32 // offset of the first byte (a string's opening quote)
	end   int32 // offset after the last byte
	next  int32 // index of the first node after this subtree
	count int32 // members (object) or items (array)
	kind  kind
	esc   bool // string contains escape sequences
}

// maxDocSize bounds documents so offsets fit in int32.
const maxDocSize = 1<<31 - 1

// syntaxError describes why parsing stopped.
type syntaxError struct {
	rule   string // "json-syntax" or "json-depth"
	offset int
	msg    string
}

// parser builds the tape of a document. It checks JSON syntax (RFC 8259,
// UTF-8 only), nesting depth and duplicate keys, and never recurses deeper
// than maxDepth+1 frames.
type parser struct {
	data     []byte
	pos      int
	maxDepth int
	nodes    []node
	keys     []int32 // key node indices of the currently open objects
	dups     []int32 // key node indices that repeat an earlier key, sorted
	err      *syntaxError
	seen     map[string]struct{}
	scratch  []byte
}

// strSafe marks bytes that need no attention inside a JSON string.
var strSafe = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// parse builds the tape; it returns false (with p.err set) on error.
func (p *parser) parse(data []byte) bool {
	p.data, p.pos, p.err = data, 0, nil
	p.nodes, p.keys, p.dups = p.nodes[:0], p.keys[:0], p.dups[:0]
	if len(data) >= 3 && data[0] == 0xEF && data[1] == 0xBB && data[2] == 0xBF {
		p.pos = 3 // RFC 8259 §8.1: a parser may ignore a byte order mark
	}
	if !p.value(0) {
		return false
	}
	p.skipWS()
	if p.pos != len(p.data) {
		return p.fail("unexpected data after the top-level value")
	}
	if len(p.dups) > 1 {
		slices.Sort(p.dups)
	}
	return true
}

func (p *parser) fail(msg string) bool {
	if p.err == nil {
		p.err = &syntaxError{rule: "json-syntax", offset: p.pos, msg: msg}
	}
	return false
}

func (p *parser) skipWS() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// value parses one value at the current position; depth counts the
// containers enclosing it.
func (p *parser) value(depth int) bool {
	p.skipWS()
	if p.pos >= len(p.data) {
		return p.fail("unexpected end of input")
	}
	switch c := p.data[p.pos]; {
	case c == '{' || c == '[':
		if depth >= p.maxDepth {
			p.err = &syntaxError{rule: "json-depth", offset: p.pos, msg: "nesting is deeper than the allowed maximum"}
			return false
		}
		if c == '{' {
			return p.object(depth + 1)
		}
		return p.array(depth + 1)
	case c == '"':
		return p.str()
	case c == 't':
		return p.literal("true", kTrue)
	case c == 'f':
		return p.literal("false", kFalse)
	case c == 'n':
		return p.literal("null", kNull)
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	default:
		return p.fail("unexpected character")
	}
}

func (p *parser) literal(word string, k kind) bool {
	if len(p.data)-p.pos < len(word) || string(p.data[p.pos:p.pos+len(word)]) != word {
		return p.fail("invalid literal")
	}
	start := p.pos
	p.pos += len(word)
	p.nodes = append(p.nodes, node{start: int32(start), end: int32(p.pos), next: int32(len(p.nodes) + 1), kind: k})
	return true
}

// number accepts the RFC 8259 number grammar.
func (p *parser) number() bool {
	d, start := p.data, p.pos
	i := p.pos
	if d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && d[i] >= '1' && d[i] <= '9':
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	default:
		p.pos = i
		return p.fail("invalid number")
	}
	if i < len(d) && d[i] == '.' {
		i++
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			p.pos = i
			return p.fail("invalid number")
		}
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			p.pos = i
			return p.fail("invalid number")
		}
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	}
	p.pos = i
	p.nodes = append(p.nodes, node{start: int32(start), end: int32(i), next: int32(len(p.nodes) + 1), kind: kNumber})
	return true
}

// str parses a string, validating escapes and UTF-8.
func (p *parser) str() bool {
	d, start := p.data, p.pos
	i := p.pos + 1
	esc := false
	for {
		for i < len(d) && strSafe[d[i]] {
			i++
		}
		if i >= len(d) {
			p.pos = i
			return p.fail("unterminated string")
		}
		switch c := d[i]; {
		case c == '"':
			i++
			p.pos = i
			p.nodes = append(p.nodes, node{start: int32(start), end: int32(i), next: int32(len(p.nodes) + 1), kind: kString, esc: esc})
			return true
		case c == '\\':
			esc = true
			n, ok := escapeLen(d[i:])
			if !ok {
				p.pos = i
				return p.fail("invalid escape sequence in string")
			}
			i += n
		case c < 0x20:
			p.pos = i
			return p.fail("unescaped control character in string")
		default:
			r, n := utf8.DecodeRune(d[i:])
			if r == utf8.RuneError && n <= 1 {
				p.pos = i
				return p.fail("invalid UTF-8 in string")
			}
			i += n
		}
	}
}

// escapeLen validates the escape sequence at the start of b (which begins
// with a backslash) and returns its length. Unpaired UTF-16 surrogates are
// rejected, as they cannot be represented in UTF-8.
func escapeLen(b []byte) (int, bool) {
	if len(b) < 2 {
		return 0, false
	}
	switch b[1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return 2, true
	case 'u':
		r, ok := Hex4(b[2:])
		if !ok {
			return 0, false
		}
		switch {
		case r >= 0xD800 && r < 0xDC00:
			if len(b) < 12 || b[6] != '\\' || b[7] != 'u' {
				return 0, false
			}
			lo, ok := Hex4(b[8:])
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return 0, false
			}
			return 12, true
		case r >= 0xDC00 && r <= 0xDFFF:
			return 0, false
		}
		return 6, true
	}
	return 0, false
}

// Hex4 decodes the four hex digits at the start of b (of a \u escape).
func Hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

func (p *parser) object(depth int) bool {
	idx := len(p.nodes)
	p.nodes = append(p.nodes, node{start: int32(p.pos), kind: kObject})
	p.pos++
	keyBase := len(p.keys)
	count := int32(0)
	p.skipWS()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
	} else {
		for {
			p.skipWS()
			if p.pos >= len(p.data) || p.data[p.pos] != '"' {
				return p.fail("expected a quoted property name")
			}
			p.keys = append(p.keys, int32(len(p.nodes)))
			if !p.str() {
				return false
			}
			p.skipWS()
			if p.pos >= len(p.data) || p.data[p.pos] != ':' {
				return p.fail("expected ':' after property name")
			}
			p.pos++
			if !p.value(depth) {
				return false
			}
			count++
			p.skipWS()
			if p.pos >= len(p.data) {
				return p.fail("unexpected end of input in object")
			}
			if p.data[p.pos] == ',' {
				p.pos++
				continue
			}
			if p.data[p.pos] == '}' {
				p.pos++
				break
			}
			return p.fail("expected ',' or '}' in object")
		}
	}
	p.findDups(p.keys[keyBase:])
	p.keys = p.keys[:keyBase]
	n := &p.nodes[idx]
	n.end, n.next, n.count = int32(p.pos), int32(len(p.nodes)), count
	return true
}

func (p *parser) array(depth int) bool {
	idx := len(p.nodes)
	p.nodes = append(p.nodes, node{start: int32(p.pos), kind: kArray})
	p.pos++
	count := int32(0)
	p.skipWS()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
	} else {
		for {
			if !p.value(depth) {
				return false
			}
			count++
			p.skipWS()
			if p.pos >= len(p.data) {
				return p.fail("unexpected end of input in array")
			}
			if p.data[p.pos] == ',' {
				p.pos++
				continue
			}
			if p.data[p.pos] == ']' {
				p.pos++
				break
			}
			return p.fail("expected ',' or ']' in array")
		}
	}
	n := &p.nodes[idx]
	n.end, n.next, n.count = int32(p.pos), int32(len(p.nodes)), count
	return true
}

// findDups records keys that repeat an earlier key of the same object.
// Small objects without escaped keys are compared pairwise; others go
// through a set of decoded names.
func (p *parser) findDups(keys []int32) {
	if len(keys) < 2 {
		return
	}
	simple := len(keys) <= 32
	for _, k := range keys {
		if p.nodes[k].esc {
			simple = false
			break
		}
	}
	if simple {
		for i := 1; i < len(keys); i++ {
			ki := p.rawString(keys[i])
			for j := range i {
				if bytes.Equal(ki, p.rawString(keys[j])) {
					p.dups = append(p.dups, keys[i])
					break
				}
			}
		}
		return
	}
	if p.seen == nil {
		p.seen = make(map[string]struct{}, len(keys))
	}
	clear(p.seen)
	for _, k := range keys {
		name := p.rawString(k)
		if p.nodes[k].esc {
			p.scratch = unescape(p.scratch[:0], name)
			name = p.scratch
		}
		if _, dup := p.seen[string(name)]; dup {
			p.dups = append(p.dups, k)
			continue
		}
		p.seen[string(name)] = struct{}{}
	}
}

// rawString returns the bytes between the quotes of string node i.
func (p *parser) rawString(i int32) []byte {
	n := &p.nodes[i]
	return p.data[n.start+1 : n.end-1]
}

// unescape appends the decoded form of the (already validated) string body
// s to dst.
func unescape(dst, s []byte) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' {
			j := i + 1
			for j < len(s) && s[j] != '\\' {
				j++
			}
			dst = append(dst, s[i:j]...)
			i = j
			continue
		}
		switch s[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, _ := Hex4(s[i+2:])
			if r >= 0xD800 && r < 0xDC00 {
				lo, _ := Hex4(s[i+8:])
				r = 0x10000 + (r-0xD800)<<10 + (lo - 0xDC00)
				i += 6
			}
			dst = utf8.AppendRune(dst, r)
			i += 6
			continue
		default: // '"', '\\', '/'
			dst = append(dst, s[i+1])
		}
		i += 2
	}
	return dst
}
