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

// jsonView renders a JSON document as highlighted HTML.
type jsonView struct {
	b     strings.Builder
	marks map[string][]int // pointer -> issue numbers
	seen  map[string]bool  // pointers rendered
}

// renderJSON renders doc; marks are the issue numbers at each pointer.
// It returns the pointers the document has, or an error for a document
// that is not JSON (the caller shows it as text).
func renderJSON(doc []byte, marks map[string][]int) (template.HTML, map[string]bool, error) {
	v := &jsonView{marks: marks, seen: map[string]bool{}}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	if err := v.value(dec, "", "", ""); err != nil {
		return "", nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return "", nil, errors.New("text after the JSON value")
	}
	return template.HTML(v.b.String()), v.seen, nil // every piece of text escaped below
}

// value renders one value at ptr, preceded by label ("key": or nothing).
func (v *jsonView) value(dec *json.Decoder, ptr, indent, label string) error {
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
			if err := v.value(dec, child, indent+"  ", childLabel); err != nil {
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
