// Package text checks the short free texts people type into the gateway:
// a replay's or a cancel's reason, a console search field.
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
