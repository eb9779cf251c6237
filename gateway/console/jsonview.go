package console

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"html/template"
	"io"
	"strings"
)

// The playground shows a native record with each issue highlighted at its
// place. The record is pretty-printed from its own tokens (its key order
// kept); each member is an element whose id is derived from its JSON
// pointer, and a member an issue points at is a <mark> followed by links
// to the issues, so the highlight needs no script.

// pointerID is the element id of a JSON pointer's member ("ptr" + pointer,
// percent-escaped so that any key makes a valid fragment).
func pointerID(ptr string) string {
	var b strings.Builder
	b.WriteString("ptr")
	for i := 0; i < len(ptr); i++ {
		ch := ptr[i]
		if ch > ' ' && ch < 0x7f && !strings.ContainsRune("%#\"'<>&?`{}|\\^[]", rune(ch)) {
			b.WriteByte(ch)
		} else {
			fmt.Fprintf(&b, "%%%02X", ch)
		}
	}
	return b.String()
}

// pointerToken escapes one key for a JSON pointer (RFC 6901).
func pointerToken(k string) string {
	return strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
}

// parentPointer drops a pointer's last token ("" stays "").
func parentPointer(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

// Every view of JSON the console renders from outside input (a record in
// the playground, an EHR's answer, a stored AuditEvent) is bounded: it
// stops at maxViewDepth levels or maxViewBytes of output, whichever comes
// first, so that its cost is linear in what it shows. Indentation and
// element ids grow with the depth, so without a bound a 20 KB record
// nested 10,000 deep became a 300 MB page.
const (
	// maxViewDepth is the deepest nesting shown indented or highlighted:
	// the gateway refuses FHIR documents deeper than 100 levels, and no
	// native record is that deep.
	maxViewDepth = 100
	// maxViewBytes bounds the HTML or text of one view.
	maxViewBytes = 4 << 20
)

// errViewLimit is a document beyond maxViewDepth or maxViewBytes.
var errViewLimit = errors.New("the document is too deeply nested or too large to show")

// jsonView renders a JSON document as highlighted HTML.
type jsonView struct {
	b     strings.Builder
	marks map[string][]int // pointer -> issue numbers
	seen  map[string]bool  // pointers rendered
	max   int              // bytes of HTML at most
}

// renderJSON renders doc; marks are the issue numbers at each pointer.
// It returns the pointers the document has, or an error for a document
// that is not JSON (the caller shows it as text), or errViewLimit for one
// nested deeper than maxViewDepth or whose view would exceed maxViewBytes
// (the rendering stops there).
func renderJSON(doc []byte, marks map[string][]int) (template.HTML, map[string]bool, error) {
	return renderJSONMax(doc, marks, maxViewBytes)
}

// renderJSONMax is renderJSON with a bound of max bytes of HTML.
func renderJSONMax(doc []byte, marks map[string][]int, max int) (template.HTML, map[string]bool, error) {
	v := &jsonView{marks: marks, seen: map[string]bool{}, max: max}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	if err := v.value(dec, "", "", "", 0); err != nil {
		return "", nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return "", nil, errors.New("text after the JSON value")
	}
	return template.HTML(v.b.String()), v.seen, nil // every piece of text escaped below
}

// value renders one value at ptr, depth levels down, preceded by label
// ("key": or nothing).
func (v *jsonView) value(dec *json.Decoder, ptr, indent, label string, depth int) error {
	if v.b.Len() > v.max {
		return errViewLimit
	}
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	v.seen[ptr] = true
	nums := v.marks[ptr]
	tag := "span"
	if len(nums) > 0 {
		tag = "mark"
	}
	fmt.Fprintf(&v.b, `<%s class="m" id="%s">%s`, tag, html.EscapeString(pointerID(ptr)), label)
	switch t := tok.(type) {
	case json.Delim:
		if depth >= maxViewDepth {
			return errViewLimit
		}
		open, close := string(t), "}"
		if t == '[' {
			close = "]"
		}
		v.b.WriteString(open)
		first, i := true, 0
		for dec.More() {
			if !first {
				v.b.WriteString(",")
			}
			first = false
			v.b.WriteString("\n" + indent + "  ")
			child, childLabel := "", ""
			if t == '{' {
				kt, err := dec.Token()
				if err != nil {
					return err
				}
				k, _ := kt.(string)
				child = ptr + "/" + pointerToken(k)
				kb, _ := json.Marshal(k)
				childLabel = `<span class="k">` + html.EscapeString(string(kb)) + `</span>: `
			} else {
				child = fmt.Sprintf("%s/%d", ptr, i)
			}
			i++
			if err := v.value(dec, child, indent+"  ", childLabel, depth+1); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil {
			return err
		}
		if !first {
			v.b.WriteString("\n" + indent)
		}
		v.b.WriteString(close)
	case string:
		sb, _ := json.Marshal(t)
		v.b.WriteString(`<span class="s">` + html.EscapeString(string(sb)) + `</span>`)
	case json.Number:
		v.b.WriteString(`<span class="n">` + html.EscapeString(t.String()) + `</span>`)
	case bool:
		fmt.Fprintf(&v.b, `<span class="l">%t</span>`, t)
	case nil:
		v.b.WriteString(`<span class="l">null</span>`)
	}
	fmt.Fprintf(&v.b, "</%s>", tag)
	for _, n := range nums {
		fmt.Fprintf(&v.b, ` <a class="issue-ref" href="#issue-%d">issue %d</a>`, n, n)
	}
	return nil
}

// anchor returns the pointer of the member an issue at ptr is shown on:
// ptr itself, or its nearest ancestor the document has (a missing
// property's pointer names where it should be).
func anchor(ptr string, has map[string]bool) string {
	for ptr != "" && !has[ptr] {
		ptr = parentPointer(ptr)
	}
	return ptr
}
