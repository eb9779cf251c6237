package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/ketamine-gateway/ketamine-gateway/schemas/r4"
)

// MaxDepth is the nesting depth Validate allows, counting the top-level
// object as depth 1. The deepest valid record (a session's adverse event with
// an array of codes) is 4 levels deep.
const MaxDepth = 16

// MaxValues is the number of JSON values (objects, arrays and scalars,
// counted separately) a document may have in Validate. The largest valid
// record, a session with 50 vitals, 50 fully itemised assessments and 50
// adverse events, has about 6,600; the limit keeps the cost of validating
// junk bounded (rule json-too-large).
const MaxValues = 10000

// maxNumberLen bounds the length of a number literal. Valid records never
// come close; the bound keeps arbitrary-precision arithmetic in the schema
// validator cheap.
const maxNumberLen = 100

// CheckJSON checks the raw bytes of a document before it is decoded:
//
//   - json-empty: the document is empty or only JSON whitespace;
//   - json-syntax: the document is not UTF-8 or not well-formed JSON, or has
//     data after the top-level value (the message gives the byte offset);
//   - json-not-object: the top-level value is not an object;
//   - json-duplicate-key: a key appears twice in one object (the pointer is
//     that of the second occurrence); every duplicate is reported;
//   - json-depth: arrays and objects nest deeper than maxDepth (the pointer
//     is that of the first element too deep); checking stops there, so
//     arbitrarily deep documents cost O(maxDepth) memory and no recursion;
//   - json-number: a number that a FHIR decimal stored by the gateway could
//     not hold exactly (r4.ExactDecimal: not 0 and outside 1e-300 to 1e300
//     in magnitude, or with more significant digits than a 64-bit float
//     keeps), or a literal of more than 100 characters;
//   - json-control-character: a string value holds a control character
//     (U+0000-U+001F) other than tab, line feed and carriage return.
//
// maxDepth <= 0 means no depth limit. CheckJSON returns nil for a
// well-formed object. Issues are in document order; Validate sorts them.
//
// Validate additionally limits the number of values to MaxValues
// (json-too-large); CheckJSON does not.
func CheckJSON(doc []byte, maxDepth int) []Issue {
	return checkJSON(doc, maxDepth, 0)
}

// checkJSON is CheckJSON with a limit on the number of values (<= 0: none).
func checkJSON(doc []byte, maxDepth, maxValues int) []Issue {
	if isBlank(doc) {
		return []Issue{newIssue(RuleJSONEmpty, CodeStructure, nil, "the document is empty")}
	}
	if bytes.HasPrefix(doc, []byte("\xEF\xBB\xBF")) {
		return []Issue{newIssue(RuleJSONSyntax, CodeStructure, nil,
			"invalid JSON: the document starts with a byte order mark (at byte offset 0)")}
	}
	if off := invalidUTF8Offset(doc); off >= 0 {
		return []Issue{newIssue(RuleJSONSyntax, CodeStructure, openPath(doc, int64(off), maxDepth),
			fmt.Sprintf("invalid JSON: the document is not valid UTF-8 (at byte offset %d)", off))}
	}
	if off := loneSurrogateOffset(doc); off >= 0 {
		return []Issue{newIssue(RuleJSONSyntax, CodeStructure, openPath(doc, int64(off), maxDepth),
			fmt.Sprintf("invalid JSON: a \\u escape of half a UTF-16 surrogate pair, which no UTF-8 text can hold "+
				"(at byte offset %d); send the character itself, or both halves of its pair", off))}
	}

	var (
		stack  []*frame
		path   []pathElem // location of the innermost open container
		issues []Issue
		done   bool // the top-level value is complete
		values int  // values seen so far
	)

	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	for {
		before := dec.InputOffset()
		tok, err := dec.Token()
		if err == io.EOF && done {
			return issues
		}
		if done {
			// Anything but the end of input after the top-level object.
			return append(issues, newIssue(RuleJSONSyntax, CodeStructure, nil,
				fmt.Sprintf("invalid JSON: unexpected data after the top-level object (after byte offset %d)", before)))
		}
		if err != nil {
			return append(issues, syntaxIssue(err, path, doc))
		}
		if startsValue(tok, stack) {
			values++
			if maxValues > 0 && values > maxValues {
				return append(issues, newIssue(RuleJSONTooLarge, CodeTooCostly, nil,
					fmt.Sprintf("the document has more than %d JSON values; no valid record comes close", maxValues)))
			}
		}
		if len(stack) == 0 {
			// First token of the document.
			if d, ok := tok.(json.Delim); !ok || d != '{' {
				return []Issue{newIssue(RuleJSONNotObject, CodeStructure, nil,
					"a record must be a JSON object")}
			}
			stack = append(stack, &frame{isObject: true, expectKey: true})
			if maxDepth > 0 && len(stack) > maxDepth {
				return append(issues, depthIssue(nil, maxDepth))
			}
			continue
		}
		top := stack[len(stack)-1]
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				path = append(path, top.child())
				if maxDepth > 0 && len(stack)+1 > maxDepth {
					return append(issues, depthIssue(path, maxDepth))
				}
				stack = append(stack, &frame{isObject: t == '{', expectKey: t == '{'})
			case '}', ']':
				stack = stack[:len(stack)-1]
				if len(stack) == 0 {
					done = true
					continue
				}
				path = path[:len(path)-1]
				stack[len(stack)-1].valueDone()
			}
		default:
			if top.isObject && top.expectKey {
				key, _ := t.(string) // the decoder only returns strings as keys
				if top.seen == nil {
					top.seen = make(map[string]struct{})
				}
				if _, dup := top.seen[key]; dup {
					issues = append(issues, newIssue(RuleJSONDuplicateKey, CodeStructure,
						append(path[:len(path):len(path)], keyElem(key)),
						"duplicate key: a key may appear only once in an object"))
				} else {
					top.seen[key] = struct{}{}
				}
				top.key = key
				top.expectKey = false
				continue
			}
			if n, ok := t.(json.Number); ok && !numberInRange(string(n)) {
				issues = append(issues, newIssue(RuleJSONNumber, CodeValue,
					append(path[:len(path):len(path)], top.child()),
					"number out of range: a number must be 0 or between 1e-300 and 1e300 in magnitude and have no more significant "+
						"digits than a 64-bit floating point value keeps (15 always fit), like the FHIR decimal it becomes"))
			}
			if str, ok := t.(string); ok && !noControl(str) {
				issues = append(issues, newIssue(RuleJSONControlCharacter, CodeValue,
					append(path[:len(path):len(path)], top.child()),
					"control character: text may hold no control character (below U+0020 except tab, line feed and carriage "+
						"return, which FHIR strings cannot carry; nor DEL or U+0080-U+009F, which show as nothing or as garbage)"))
			}
			top.valueDone()
		}
	}
}

// openPath is the location of the innermost object or array open at byte
// offset off of doc, as the other json-syntax issues name it: the
// container of the token that holds off (nil: the top-level object, or
// before it). encoding/json reads invalid UTF-8 inside a string (as
// U+FFFD) and stops with a syntax error at it elsewhere, so the tokens up
// to off are those of a well-formed document. It follows at most
// maxDepth levels (<= 0: any), as checkJSON does.
func openPath(doc []byte, off int64, maxDepth int) []pathElem {
	var (
		stack []*frame
		path  []pathElem
	)
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil || dec.InputOffset() > off {
			return path
		}
		if len(stack) == 0 {
			if d, ok := tok.(json.Delim); !ok || d != '{' {
				return nil // not a record: no location
			}
			stack = append(stack, &frame{isObject: true, expectKey: true})
			continue
		}
		top := stack[len(stack)-1]
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if maxDepth > 0 && len(stack)+1 > maxDepth {
					return path
				}
				path = append(path, top.child())
				stack = append(stack, &frame{isObject: t == '{', expectKey: t == '{'})
			case '}', ']':
				stack = stack[:len(stack)-1]
				if len(stack) == 0 {
					return path
				}
				path = path[:len(path)-1]
				stack[len(stack)-1].valueDone()
			}
		default:
			if top.isObject && top.expectKey {
				top.key, _ = t.(string)
				top.expectKey = false
				continue
			}
			top.valueDone()
		}
	}
}

// child is the location element of f's next value.
func (f *frame) child() pathElem {
	if f.isObject {
		return keyElem(f.key)
	}
	return indexElem(f.index)
}

// valueDone moves f past a value.
func (f *frame) valueDone() {
	if f.isObject {
		f.expectKey = true
	} else {
		f.index++
	}
}

// frame is an open object or array in checkJSON.
type frame struct {
	isObject  bool
	expectKey bool // object: the next token is a key (or '}')
	key       string
	index     int
	seen      map[string]struct{}
}

// startsValue reports whether tok begins a value: an opening bracket or a
// scalar that is not an object key.
func startsValue(tok json.Token, stack []*frame) bool {
	switch t := tok.(type) {
	case json.Delim:
		return t == '{' || t == '['
	case string:
		return len(stack) == 0 || !stack[len(stack)-1].isObject || !stack[len(stack)-1].expectKey
	}
	return true
}

func depthIssue(path []pathElem, maxDepth int) Issue {
	return newIssue(RuleJSONDepth, CodeStructure, path,
		fmt.Sprintf("the document nests arrays and objects deeper than %d levels", maxDepth))
}

// syntaxIssue describes a decoder error in doc without quoting the
// document (the decoder's own messages contain the offending character).
// The offset points at or just after the offending byte: the Decoder's
// offset of an error inside a number or a literal is not one into the
// whole document, so a syntax error's offset is taken from a scan of the
// whole document (json.Unmarshal checks it all before decoding).
func syntaxIssue(err error, path []pathElem, doc []byte) Issue {
	what, off := "malformed JSON", int64(-1)
	var se *json.SyntaxError
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		what, off = "unexpected end of input (truncated document?)", int64(len(doc))
	case errors.As(err, &se):
		var whole *json.SyntaxError
		var raw json.RawMessage
		if errors.As(json.Unmarshal(doc, &raw), &whole) {
			se = whole
		}
		// encoding/json counts the bytes read, the offending one
		// included: the offset of that byte is one less (as the FHIR
		// validator's offsets are).
		off = max(se.Offset-1, 0)
		msg := se.Error()
		for _, c := range syntaxCategories {
			if strings.Contains(msg, c.match) {
				what = c.what
				break
			}
		}
	}
	msg := "invalid JSON: " + what
	if off >= 0 {
		msg += " near byte offset " + strconv.FormatInt(off, 10)
	}
	return newIssue(RuleJSONSyntax, CodeStructure, path, msg)
}

// syntaxCategories classifies encoding/json syntax errors, most specific
// first.
var syntaxCategories = []struct{ match, what string }{
	{"unexpected end", "unexpected end of input (truncated document?)"},
	{"after object key:value pair", "expected ',' or '}' after an object member"},
	{"after object key", "expected ':' after an object key"},
	{"after array element", "expected ',' or ']' after an array element"},
	{"looking for beginning of object key string", "expected a string as object key"},
	{"in string literal", "invalid character in a string (control characters must be escaped)"},
	{"in string escape code", "invalid escape sequence in a string"},
	{"in \\u hexadecimal character escape", "invalid \\u escape sequence in a string"},
	{"in numeric literal", "malformed number"},
	{"in literal", "malformed literal (true, false or null)"},
	{"looking for beginning of value", "expected a value"},
	{"invalid character", "unexpected character"},
}

func isBlank(doc []byte) bool {
	for _, c := range doc {
		switch c {
		case ' ', '\t', '\r', '\n':
		default:
			return false
		}
	}
	return true
}

// loneSurrogateOffset is the byte offset of the first \u escape in a
// string of doc that is half of a UTF-16 surrogate pair without the other
// half, or -1. Go's decoder would read it as U+FFFD, so the record stored
// would not be the one sent; the FHIR reader (r4) refuses it too.
func loneSurrogateOffset(doc []byte) int {
	if !bytes.Contains(doc, []byte(`\u`)) {
		return -1
	}
	inString := false
	for i := 0; i < len(doc); i++ {
		switch c := doc[i]; {
		case c == '"':
			inString = !inString
		case c == '\\' && inString && i+1 < len(doc):
			if doc[i+1] != 'u' {
				i++ // any other escape is two bytes
				continue
			}
			r, ok := r4.Hex4(doc[i+2:])
			switch {
			case !ok:
				return -1 // not an escape at all: the syntax check names it
			case r >= 0xD800 && r < 0xDC00:
				if i+11 < len(doc) && doc[i+6] == '\\' && doc[i+7] == 'u' {
					if lo, ok := r4.Hex4(doc[i+8:]); ok && lo >= 0xDC00 && lo <= 0xDFFF {
						i += 11
						continue
					}
				}
				return i
			case r >= 0xDC00 && r <= 0xDFFF:
				return i
			}
			i += 5
		}
	}
	return -1
}

// invalidUTF8Offset returns the offset of the first byte that is not part of
// a valid UTF-8 sequence, or -1.
func invalidUTF8Offset(doc []byte) int {
	if utf8.Valid(doc) {
		return -1
	}
	for i := 0; i < len(doc); {
		r, size := utf8.DecodeRune(doc[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return -1
}

// numberInRange reports whether a JSON number literal is one a FHIR decimal
// stored by the gateway holds exactly (r4.ExactDecimal), and is not
// absurdly long.
func numberInRange(s string) bool {
	return len(s) <= maxNumberLen && r4.ExactDecimal(s)
}

// noControl reports that the record string s holds no control character
// (Unicode Cc) other than tab, line feed and carriage return: none of C0
// (r4.NoControl: FHIR strings cannot carry them), DEL nor C1 (U+0080 to
// U+009F, in UTF-8 0xC2 then 0x80-0x9F), which FHIR strings may carry but
// no clinic means to send (a NEL from an EBCDIC conversion, an escape
// sequence's CSI): a chart shows them as nothing or as garbage.
func noControl(s string) bool {
	if !r4.NoControl(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == 0x7f || c == 0xc2 && i+1 < len(s) && s[i+1] >= 0x80 && s[i+1] <= 0x9f {
			return false
		}
	}
	return true
}
