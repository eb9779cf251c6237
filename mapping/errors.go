package mapping

import (
	"fmt"
	"sort"
	"strings"
)

// Violation is one broken clinical rule in a native record.
type Violation struct {
	// Rule is the stable rule id, e.g. "assessment.total-mismatch".
	Rule string
	// Pointer is the RFC 6901 JSON pointer of the element at fault.
	Pointer string
	// Expression is the same location as a FHIRPath-style path over the
	// native JSON, e.g. "items[2].score".
	Expression string
	// Message says what the rule requires. It never quotes a value from the
	// record, because records are protected health information.
	Message string
}

// RuleError is returned when a record is well-formed but breaks one or more
// clinical rules. Violations is never empty.
type RuleError struct {
	Kind       Kind
	Violations []Violation
}

// Error summarises the error without quoting any value from the record.
func (e *RuleError) Error() string {
	return fmt.Sprintf("%s record breaks %d clinical rule(s), first: %s at %s",
		e.Kind, len(e.Violations), e.Violations[0].Rule, e.Violations[0].Pointer)
}

// violations collects rule violations while a record is checked.
type violations []Violation

func (v *violations) add(rule, pointer, format string, args ...any) {
	*v = append(*v, Violation{Rule: rule, Pointer: pointer, Expression: pointerPath(pointer), Message: fmt.Sprintf(format, args...)})
}

// err returns a *RuleError for the collected violations, or nil.
func (v violations) err(kind Kind) error {
	if len(v) == 0 {
		return nil
	}
	out := append([]Violation(nil), v...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Pointer < out[j].Pointer })
	return &RuleError{Kind: kind, Violations: out}
}

// pointerPath turns a JSON pointer into a dotted path with indexes:
// "/items/2/score" -> "items[2].score". Pointers here are built from
// property names without '/' or '~', so no unescaping is needed.
func pointerPath(pointer string) string {
	var b strings.Builder
	for _, tok := range strings.Split(strings.TrimPrefix(pointer, "/"), "/") {
		if tok == "" {
			continue
		}
		if tok[0] >= '0' && tok[0] <= '9' {
			b.WriteString("[" + tok + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(tok)
	}
	return b.String()
}
