package search

import "strings"

// PlusAdvice is what to do about a time zone offset whose + a client sent
// unencoded in a query string (see PlusAsSpace).
const PlusAdvice = "a + in a query string means a space; encode + as %2B (such as 2026-01-31T09:00:00%2B13:00), " +
	"or give the time in UTC (Z)"

// PlusAsSpace reports whether v, a date or instant query value that did
// not parse, holds a space where a time zone offset's + would be: a time
// (after a T) then a space and hh:mm at the end, as "...T14:25:13+13:00"
// reads once form decoding has made its + a space. Every time zone east
// of UTC meets this on its first query with an offset; the errors of the
// date and instant parameters (search, _since, the operator's since) say
// so with PlusAdvice rather than only that the value is not a date.
func PlusAsSpace(v string) bool {
	i := strings.LastIndexByte(v, ' ')
	if i < 0 || !strings.Contains(v[:i], "T") {
		return false
	}
	z := v[i+1:]
	return len(z) == 5 && isDigit(z[0]) && isDigit(z[1]) && z[2] == ':' && isDigit(z[3]) && isDigit(z[4])
}
