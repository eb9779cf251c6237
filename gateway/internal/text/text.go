// Package text checks the short free texts people type into the gateway
// (a replay's or a cancel's reason, a console search field) and words the
// lists its messages name.
package text

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// OneLine reports whether s is at most max characters (runes) and holds
// no control characters (line breaks, tabs).
func OneLine(s string, max int) bool {
	return utf8.RuneCountInString(s) <= max && !strings.ContainsFunc(s, unicode.IsControl)
}

// JoinAnd joins items as a reader would: "a", "a and b", "a, b and c".
func JoinAnd(items []string) string {
	switch len(items) {
	case 0:
		return ""
	case 1:
		return items[0]
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}
