package r4

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// Narrative (xhtml) checks. FHIR narrative is a restricted XHTML <div>
// (txt-1, txt-2) that SHALL NOT hold active content. The value is parsed
// as XML, its namespaces resolved (parseXHTML: one well-formed div with
// content, only the XHTML elements txt-1 allows: narrativeElements), and its bytes are scanned as a browser
// would read them (unsafeMarkup), which catches what is unsafe to render
// (rule xhtml-unsafe) even where the XML is broken:
// script-capable elements, event-handler attributes (on*), javascript: and
// vbscript: URLs in any attribute, data: URLs in URL attributes (except
// images in img src: png, gif, jpeg, webp), and style attributes that can
// load or run something (url(), expression(), @import, CSS escapes and
// comments that could hide them). Entities that XML does not define are
// primitive-format, and so is a div that does not declare the XHTML
// namespace (xmlns="http://www.w3.org/1999/xhtml").

// unsafeTags are elements that can run code or load active content.
var unsafeTags = map[string]bool{
	"script": true, "iframe": true, "frame": true, "frameset": true,
	"object": true, "embed": true, "applet": true, "form": true,
	"input": true, "button": true, "base": true, "link": true,
	"meta": true, "style": true, "svg": true, "math": true,
}

// narrativeElements are the elements a narrative may hold (txt-1: "the
// basic html formatting elements described in chapters 7-11 (except
// section 4 of chapter 9) and 15 of the HTML 4.0 standard, <a> elements
// (either name or href), images and internally contained stylesheets"),
// as the HL7 validator lists them, in XHTML's lower case. The style
// element, which txt-1 would allow, is among unsafeTags: a stylesheet can
// load content (url(), @import), and it is refused as unsafe first.
var narrativeElements = map[string]bool{
	"p": true, "br": true, "div": true, "h1": true, "h2": true, "h3": true, "h4": true, "h5": true, "h6": true,
	"a": true, "span": true, "b": true, "em": true, "i": true, "strong": true, "small": true, "big": true,
	"tt": true, "dfn": true, "q": true, "var": true, "abbr": true, "acronym": true, "cite": true,
	"blockquote": true, "hr": true, "address": true, "bdo": true, "kbd": true, "sub": true, "sup": true,
	"ul": true, "ol": true, "li": true, "dl": true, "dt": true, "dd": true, "pre": true,
	"table": true, "caption": true, "colgroup": true, "col": true, "thead": true, "tr": true, "tfoot": true,
	"tbody": true, "th": true, "td": true, "code": true, "samp": true, "img": true, "map": true, "area": true,
}

// narrativeElementsText is the error of an element not in
// narrativeElements, which it lists.
var narrativeElementsText = "the narrative holds an element that R4 does not allow in a narrative: only the basic HTML " +
	"formatting elements, in lower case (txt-1: " + strings.Join(slices.Sorted(maps.Keys(narrativeElements)), ", ") + ")"

// xhtmlNamespace is the namespace the narrative's div declares (R4
// narrative.html, json.html: xmlns="http://www.w3.org/1999/xhtml").
const xhtmlNamespace = "http://www.w3.org/1999/xhtml"

// xhtml validates a Narrative.div value.
func (w *walker) xhtml(s []byte) {
	t := bytes.TrimLeft(s, " \t\r\n")
	if !bytes.HasPrefix(t, []byte("<div")) || len(t) < 5 || !(isSpace(t[4]) || t[4] == '>' || t[4] == '/') {
		w.errorf("primitive-format", "the narrative must be a single XHTML div element")
		return
	}
	if !NoControl(s) {
		w.errorf("primitive-format", "the narrative contains control characters")
		return
	}
	tree := parseXHTML(t)
	if tree.format == "" && !tree.rootXHTML {
		// Reported beside what follows: a div without its namespace may
		// also be unsafe, and the client should hear both.
		w.errorf("primitive-format", `the narrative's div must be in the XHTML namespace: write <div xmlns="`+xhtmlNamespace+
			`"> (R4 narrative.html, txt-1)`)
	}
	reason := unsafeMarkup(s)
	if reason == "" {
		reason = tree.unsafe
	}
	if reason != "" {
		w.errorf("xhtml-unsafe", "the narrative contains "+reason+", which is not allowed (txt-1)")
		return
	}
	if !xmlEntitiesOK(s) {
		w.errorf("primitive-format", "the narrative uses an entity that XHTML does not define (only &lt; &gt; &amp; &quot; &apos; and numeric references)")
		return
	}
	if tree.format != "" {
		w.errorf("primitive-format", tree.format)
	}
}

// xhtmlTree is what parseXHTML found.
type xhtmlTree struct {
	// rootXHTML: the root div is in the XHTML namespace.
	rootXHTML bool
	// format says why the value is no single well-formed XHTML div with
	// content (txt-2), unsafe what active content the parse found (also
	// in a disguise unsafeMarkup does not see: an element or attribute
	// under a namespace prefix); "" when none.
	format, unsafe string
}

// parseXHTML parses s as XML with its namespaces resolved: one root div,
// well formed (tags closed in order, each attribute once, only XML's
// entities), holding something other than whitespace (txt-2), every
// element in the XHTML namespace, none of those narrative.html forbids
// (html, head, body), none that unsafeTags lists and no on* attribute,
// however prefixed, and every element one of narrativeElements (txt-1). Its messages quote no content, only a line.
func parseXHTML(s []byte) xhtmlTree {
	var tree xhtmlTree
	d := xml.NewDecoder(bytes.NewReader(s))
	d.Strict = true
	depth, roots, content := 0, 0, false
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			var se *xml.SyntaxError
			if errors.As(err, &se) {
				tree.format = fmt.Sprintf("the narrative is not well-formed XML (line %d): tags must close in order, "+
					"attributes be quoted and given once, entities be XML's", se.Line)
			} else {
				tree.format = "the narrative is not well-formed XML"
			}
			return tree
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				if roots++; roots > 1 {
					tree.format = "the narrative must be a single XHTML div element"
					return tree
				}
				tree.rootXHTML = t.Name.Space == xhtmlNamespace
			} else {
				content = true
			}
			depth++
			local := strings.ToLower(t.Name.Local)
			switch {
			case unsafeTags[local]:
				tree.unsafe = "a script-capable element"
				return tree
			case tree.format != "":
			case depth > 1 && t.Name.Space != xhtmlNamespace:
				tree.format = "the narrative holds an element outside the XHTML namespace (R4 narrative.html: XHTML only)"
			case local == "html" || local == "head" || local == "body":
				tree.format = "the narrative holds an html, head or body element, which R4 narrative.html forbids (txt-1)"
			case !narrativeElements[t.Name.Local]:
				// The name is not quoted: it is content.
				tree.format = narrativeElementsText
			}
			seen := make(map[xml.Name]bool, len(t.Attr))
			for _, a := range t.Attr {
				if seen[a.Name] {
					tree.format = "the narrative is not well-formed XML: an element has the same attribute twice"
				}
				seen[a.Name] = true
				name := strings.ToLower(a.Name.Local)
				if a.Name.Space != "xmlns" && strings.HasPrefix(name, "on") {
					tree.unsafe = "an event-handler attribute"
					return tree
				}
				if r := unsafeValue([]byte(local), []byte(name), []byte(a.Value)); r != "" {
					tree.unsafe = r
					return tree
				}
			}
		case xml.EndElement:
			depth--
		case xml.CharData:
			if len(bytes.TrimLeft(t, " \t\r\n")) == 0 {
				break
			}
			if depth == 0 {
				tree.format = "the narrative must be a single XHTML div element"
				return tree
			}
			content = true
		case xml.ProcInst, xml.Directive:
			tree.format = "the narrative must be a single XHTML div element (no processing instruction or DOCTYPE)"
			return tree
		}
	}
	if tree.format == "" && !content {
		tree.format = "the narrative's div is empty: it must hold some text or an element (txt-2)"
	}
	return tree
}

// unsafeMarkup scans the tags of s and describes the first unsafe construct
// found, or returns "".
func unsafeMarkup(s []byte) string {
	for i := 0; i < len(s); i++ {
		if s[i] != '<' {
			continue
		}
		i++
		if i < len(s) && s[i] == '!' { // comment, CDATA or doctype: skip it
			if end := bytes.IndexByte(s[i:], '>'); end >= 0 {
				i += end
			}
			continue
		}
		if i < len(s) && s[i] == '/' {
			i++
		}
		j := i
		for j < len(s) && isNameChar(s[j]) {
			j++
		}
		if j == i {
			continue // a stray '<', not a tag
		}
		tag := bytes.ToLower(s[i:j])
		if unsafeTags[string(tag)] {
			return "a script-capable element"
		}
		end, reason := scanAttributes(s, j, tag)
		if reason != "" {
			return reason
		}
		i = end
	}
	return ""
}

func isNameChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == ':' || c == '.'
}

// scanAttributes reads the attributes of tag (lower case) starting at s[i]
// and returns the index of the closing '>' (or len(s)) and the reason the
// tag is unsafe, if it is.
func scanAttributes(s []byte, i int, tag []byte) (int, string) {
	for i < len(s) {
		c := s[i]
		switch {
		case c == '>':
			return i, ""
		case isSpace(c) || c == '/':
			i++
			continue
		}
		j := i
		for j < len(s) && !isSpace(s[j]) && s[j] != '=' && s[j] != '>' && s[j] != '/' {
			j++
		}
		name := s[i:j]
		if j == i { // stray character such as a quote
			j++
		}
		if hasPrefixFold(name, "on") {
			return j, "an event-handler attribute"
		}
		for j < len(s) && isSpace(s[j]) {
			j++
		}
		if j >= len(s) || s[j] != '=' {
			i = j
			continue
		}
		j++
		for j < len(s) && isSpace(s[j]) {
			j++
		}
		var val []byte
		if j < len(s) && (s[j] == '"' || s[j] == '\'') {
			q := s[j]
			end := bytes.IndexByte(s[j+1:], q)
			if end < 0 {
				val, j = s[j+1:], len(s)
			} else {
				val, j = s[j+1:j+1+end], j+2+end
			}
		} else {
			k := j
			for k < len(s) && !isSpace(s[k]) && s[k] != '>' {
				k++
			}
			val, j = s[j:k], k
		}
		if reason := unsafeValue(tag, bytes.ToLower(name), val); reason != "" {
			return j, reason
		}
		i = j
	}
	return len(s), ""
}

// urlAttributes are the attributes whose value is a URL a browser may
// load or navigate to.
var urlAttributes = map[string]bool{
	"href": true, "src": true, "cite": true, "longdesc": true, "background": true, "action": true,
	"formaction": true, "poster": true, "srcset": true, "xlink:href": true, "lowsrc": true, "dynsrc": true,
	"data": true, "codebase": true, "usemap": true, "profile": true, "manifest": true, "xml:base": true,
}

// unsafeValue describes what makes the value of attribute name (lower
// case) of tag unsafe, or returns "".
func unsafeValue(tag, name, v []byte) string {
	norm := normalizeValue(v)
	switch {
	case bytes.HasPrefix(norm, []byte("javascript:")), bytes.HasPrefix(norm, []byte("vbscript:")):
		return "a script URL"
	case string(name) == "style" && unsafeStyle(norm):
		return "a style that can load or run content"
	case urlAttributes[string(name)] && bytes.HasPrefix(norm, []byte("data:")) &&
		!(string(tag) == "img" && string(name) == "src" && dataImage(norm)):
		return "a data: URL"
	}
	return ""
}

// normalizeValue is an attribute value as a browser would see it for
// scheme and CSS checks: character references decoded, whitespace and
// control characters removed, ASCII letters lowered.
func normalizeValue(v []byte) []byte {
	norm := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '&' {
			if r, n := charRef(v[i:]); n > 0 {
				i += n - 1
				if r < 0 || r >= 0x80 {
					continue
				}
				c = byte(r)
			}
		}
		if c <= ' ' || c == 0x7f {
			continue
		}
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		norm = append(norm, c)
	}
	return norm
}

// unsafeStyle reports whether a normalised style attribute can load a
// resource or run code: url(), image-set(), expression() (old IE),
// @import, behavior/-moz-binding, script URLs, or a CSS escape or comment
// that could spell any of them in disguise.
func unsafeStyle(norm []byte) bool {
	for _, bad := range []string{"url(", "image-set(", "expression(", "@import", "behavior", "binding",
		"javascript:", "vbscript:", `\`, "/*"} {
		if bytes.Contains(norm, []byte(bad)) {
			return true
		}
	}
	return false
}

// dataImage reports whether a normalised data: URL is a raster image
// (never SVG, which can carry scripts).
func dataImage(norm []byte) bool {
	for _, t := range []string{"data:image/png", "data:image/gif", "data:image/jpeg", "data:image/jpg", "data:image/webp"} {
		if rest, ok := bytes.CutPrefix(norm, []byte(t)); ok && len(rest) > 0 && (rest[0] == ';' || rest[0] == ',') {
			return true
		}
	}
	return false
}

// charRef decodes a character reference at the start of s ("&#106;",
// "&#x6A;", "&colon;"-style names map to -1) and returns its length.
func charRef(s []byte) (rune, int) {
	end := bytes.IndexByte(s, ';')
	if end < 2 || end > 12 {
		return 0, 0
	}
	body := s[1:end]
	if body[0] != '#' {
		switch string(body) {
		case "colon":
			return ':', end + 1
		case "Tab", "NewLine":
			return ' ', end + 1
		}
		return -1, end + 1
	}
	var r rune
	if len(body) > 1 && (body[1] == 'x' || body[1] == 'X') {
		if len(body) == 2 {
			return 0, 0
		}
		for _, c := range body[2:] {
			d := hexVal(c)
			if d < 0 {
				return 0, 0
			}
			r = r*16 + rune(d)
			if r > 0x10FFFF {
				return 0, 0
			}
		}
		return r, end + 1
	}
	if len(body) == 1 {
		return 0, 0
	}
	for _, c := range body[1:] {
		if c < '0' || c > '9' {
			return 0, 0
		}
		r = r*10 + rune(c-'0')
		if r > 0x10FFFF {
			return 0, 0
		}
	}
	return r, end + 1
}

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// xmlEntitiesOK reports whether every '&' starts one of the five XML
// entities or a numeric character reference.
func xmlEntitiesOK(s []byte) bool {
	for i := bytes.IndexByte(s, '&'); i >= 0; {
		rest := s[i:]
		switch {
		case bytes.HasPrefix(rest, []byte("&lt;")), bytes.HasPrefix(rest, []byte("&gt;")),
			bytes.HasPrefix(rest, []byte("&amp;")), bytes.HasPrefix(rest, []byte("&quot;")),
			bytes.HasPrefix(rest, []byte("&apos;")):
		default:
			if r, n := charRef(rest); n == 0 || r < 0 {
				return false
			}
		}
		next := bytes.IndexByte(s[i+1:], '&')
		if next < 0 {
			break
		}
		i += 1 + next
	}
	return true
}
