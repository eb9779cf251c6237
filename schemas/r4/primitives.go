package r4

import (
	"bytes"
	"math"
	"strconv"
	"time"
)

// Format rules of the FHIR R4 primitive types
// (http://hl7.org/fhir/R4/datatypes.html), written as small scanners
// rather than regular expressions to stay allocation-free.

// maxStringBytes is the FHIR limit on string (and code, id, markdown)
// values: 1 MB.
const maxStringBytes = 1 << 20

var primNames = [...]string{
	pBoolean: "boolean", pInteger: "integer", pUnsignedInt: "unsignedInt",
	pPositiveInt: "positiveInt", pDecimal: "decimal", pString: "string",
	pMarkdown: "markdown", pCode: "code", pID: "id", pURI: "uri", pURL: "url",
	pCanonical: "canonical", pUUID: "uuid", pOID: "oid",
	pBase64Binary: "base64Binary", pInstant: "instant", pDate: "date",
	pDateTime: "dateTime", pTime: "time", pXHTML: "xhtml",
}

// primName returns the FHIR type code of p.
func primName(p prim) string {
	if int(p) < len(primNames) {
		return primNames[p]
	}
	return "primitive"
}

// checkNumber validates the raw JSON number token of an integer-like or
// decimal element. The parser already enforced the JSON number grammar,
// which is exactly the FHIR decimal grammar.
func checkNumber(p prim, raw []byte) bool {
	if p == pDecimal {
		return true
	}
	neg := raw[0] == '-'
	digits := raw
	if neg {
		digits = raw[1:]
	}
	var v int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return false // fraction or exponent
		}
		v = v*10 + int64(c-'0')
		if v > 1<<31 {
			return false
		}
	}
	if neg {
		v = -v
	}
	switch p {
	case pInteger:
		return v >= -1<<31 && v <= 1<<31-1
	case pUnsignedInt:
		return !neg && v <= 1<<31-1
	case pPositiveInt:
		return !neg && v >= 1 && v <= 1<<31-1
	}
	return false
}

// Decimals are indexed and compared as IEEE 754 double precision numbers
// (SQLite REAL, PostgreSQL double precision), so a decimal the gateway
// stores must survive the round trip through a double, or a search could
// never find it: its magnitude is 0 or between minDecimal and maxDecimal
// (away from the edges of the double range, so that search bounds such as
// ap's 10% stay finite and normal), and its significant digits are those
// of the double nearest to it (15 always fit; 16 or 17 when the double
// keeps them; trailing zeros are free).
const (
	minDecimal = 1e-300
	maxDecimal = 1e300
)

// ExactDecimal reports whether the JSON number raw is a decimal the
// gateway stores and searches exactly (see minDecimal). Native records
// obey the same rule (schemas.CheckJSON, json-number), since their numbers
// become FHIR decimals.
func ExactDecimal[T string | []byte](raw T) bool {
	digits, exp, ok := decimalDigits(raw)
	if !ok {
		return false
	}
	if digits == "" {
		return true // zero, however written
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsInf(f, 0) || math.Abs(f) < minDecimal || math.Abs(f) > maxDecimal {
		return false
	}
	back, bexp, _ := decimalDigits(strconv.FormatFloat(math.Abs(f), 'e', -1, 64))
	return back == digits && bexp == exp
}

// decimalDigits returns the significant digits of a JSON number (no
// leading or trailing zeros; "" for zero) and the power of ten of the
// last one, ignoring the sign. An exponent of more than 6 digits (leading
// zeros aside) is not ok: no double is that far out.
func decimalDigits[T string | []byte](raw T) (string, int, bool) {
	i := 0
	if i < len(raw) && (raw[i] == '-' || raw[i] == '+') {
		i++
	}
	var mant []byte
	frac := 0
	seenPoint := false
	for ; i < len(raw) && raw[i] != 'e' && raw[i] != 'E'; i++ {
		switch c := raw[i]; {
		case c == '.':
			seenPoint = true
		case c >= '0' && c <= '9':
			mant = append(mant, c)
			if seenPoint {
				frac++
			}
		default:
			return "", 0, false
		}
	}
	exp := 0
	if i < len(raw) {
		e := raw[i+1:]
		if len(e) > 0 && (e[0] == '+' || e[0] == '-') {
			e = e[1:]
		}
		for len(e) > 1 && e[0] == '0' {
			e = e[1:]
		}
		if len(e) == 0 || len(e) > 6 {
			return "", 0, false
		}
		n, err := strconv.Atoi(string(raw[i+1:]))
		if err != nil {
			return "", 0, false
		}
		exp = n
	}
	exp -= frac
	for len(mant) > 0 && mant[0] == '0' {
		mant = mant[1:]
	}
	for len(mant) > 0 && mant[len(mant)-1] == '0' {
		mant = mant[:len(mant)-1]
		exp++
	}
	return string(mant), exp, true
}

// isDecimal reports whether s matches the FHIR decimal (= JSON number)
// grammar -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?.
func isDecimal(s []byte) bool {
	var p parser
	p.data = s
	return len(s) > 0 && (s[0] == '-' || s[0] >= '0' && s[0] <= '9') && p.number() && p.pos == len(s)
}

// checkString validates the decoded, non-empty content of a string-based
// primitive.
func checkString(p prim, s []byte) bool {
	switch p {
	case pString, pMarkdown:
		return len(s) <= maxStringBytes && NoControl(s)
	case pCode:
		return len(s) <= maxStringBytes && isCode(s)
	case pID:
		return isID(s)
	case pURI, pURL, pCanonical:
		return noSpace(s) && urnOK(s)
	case pUUID:
		return isUUIDURN(s)
	case pOID:
		return isOIDURN(s)
	case pBase64Binary:
		return isBase64(s)
	case pInstant:
		return checkDateTime(s, true)
	case pDate:
		_, _, ok := parseDate(s)
		return ok
	case pDateTime:
		return checkDateTime(s, false)
	case pTime:
		n, ok := parseTime(s)
		return ok && n == len(s)
	}
	return true
}

// NoControl reports that s holds no C0 control character other than tab,
// CR and LF: the FHIR string regex [ \r\n\t\S]+, as the HL7 validator
// applies it. The native records' schemas apply it to every string (every
// one ends up in a FHIR string, code or uri).
func NoControl[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' && c != '\r' && c != '\n' {
			return false
		}
	}
	return true
}

// isSpace is the regex \s class of the FHIR definitions (Java).
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// isCode implements [^\s]+(\s[^\s]+)*: no leading, trailing or doubled
// whitespace.
func isCode(s []byte) bool {
	if isSpace(s[0]) || isSpace(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if isSpace(s[i]) && isSpace(s[i-1]) {
			return false
		}
	}
	return NoControl(s)
}

// isID implements [A-Za-z0-9\-\.]{1,64}.
func isID(s []byte) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !isIDChar(c) {
			return false
		}
	}
	return true
}

func isIDChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.'
}

// noSpace implements \S* (uri, url, canonical) and rejects control
// characters.
func noSpace(s []byte) bool {
	for _, c := range s {
		if c <= ' ' || c == 0x7f {
			return false
		}
	}
	return NoControl(s)
}

// urnOK checks the two URN forms FHIR gives a syntax for: a uri starting
// with urn:uuid: or urn:oid: must hold a valid (lowercase) UUID or OID,
// which a fragment may follow (RFC 3986 3.5: any URI may carry one; an
// IPS narrative link names an element of a Bundle entry so, urn:uuid:...#x).
func urnOK(s []byte) bool {
	if i := bytes.IndexByte(s, '#'); i >= 0 {
		s = s[:i]
	}
	switch {
	case len(s) >= 9 && string(s[:9]) == "urn:uuid:":
		return isUUID(s[9:])
	case len(s) >= 8 && string(s[:8]) == "urn:oid:":
		return isOID(s[8:])
	}
	return true
}

// isAbsoluteURI reports whether s starts with a URI scheme followed by ':'.
func isAbsoluteURI(s []byte) bool {
	i := 0
	for i < len(s) && s[i] != ':' {
		i++
	}
	return i < len(s) && isScheme(s[:i])
}

// base64Len returns the decoded length of valid base64 text.
func base64Len(s []byte) int {
	n, pad := 0, 0
	for _, c := range s {
		switch {
		case isSpace(c):
		case c == '=':
			pad++
			n++
		default:
			n++
		}
	}
	return n/4*3 - pad
}

// isUUIDURN implements urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}.
func isUUIDURN(s []byte) bool {
	return len(s) == 45 && string(s[:9]) == "urn:uuid:" && isUUID(s[9:])
}

// isUUID checks the lowercase 8-4-4-4-12 hex form.
func isUUID(s []byte) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// isOIDURN implements urn:oid:[0-2](\.(0|[1-9][0-9]*))+.
func isOIDURN(s []byte) bool {
	if len(s) < 8 || string(s[:8]) != "urn:oid:" {
		return false
	}
	return isOID(s[8:])
}

// isOID implements [0-2](\.(0|[1-9][0-9]*))+.
func isOID(s []byte) bool {
	if len(s) < 3 || s[0] < '0' || s[0] > '2' || s[1] != '.' {
		return false
	}
	arcs := s[1:]
	for len(arcs) > 0 {
		if arcs[0] != '.' || len(arcs) < 2 {
			return false
		}
		arcs = arcs[1:]
		j := 0
		for j < len(arcs) && arcs[j] >= '0' && arcs[j] <= '9' {
			j++
		}
		if j == 0 || (arcs[0] == '0' && j > 1) {
			return false
		}
		arcs = arcs[j:]
	}
	return true
}

// isBase64 implements (\s*([0-9a-zA-Z\+/=]){4}\s*)+ and additionally
// requires padding only at the end, so that the content really decodes.
func isBase64(s []byte) bool {
	n, pad := 0, 0
	for _, c := range s {
		switch {
		case isSpace(c):
			continue
		case c == '=':
			pad++
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '+', c == '/':
			if pad > 0 {
				return false
			}
		default:
			return false
		}
		n++
	}
	return n > 0 && n%4 == 0 && pad <= 2
}

// digits reads n ASCII digits at s[i:] as a number.
func digits(s []byte, i, n int) (int, bool) {
	if i+n > len(s) {
		return 0, false
	}
	v := 0
	for _, c := range s[i : i+n] {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

// parseDate reads YYYY, YYYY-MM or YYYY-MM-DD (year 0001-9999, valid month
// and day for the month, leap years included) at the start of s and
// returns the bytes consumed and the precision (1 year, 2 month, 3 day).
// ok requires that the whole of s was consumed.
func parseDate(s []byte) (n, prec int, ok bool) {
	n, prec = datePrefix(s)
	return n, prec, n > 0 && n == len(s)
}

// datePrefix is parseDate without the whole-input requirement; n == 0
// means no valid date prefix.
func datePrefix(s []byte) (n, prec int) {
	y, ok := digits(s, 0, 4)
	if !ok || y == 0 {
		return 0, 0
	}
	if len(s) == 4 || s[4] != '-' {
		return 4, 1
	}
	m, ok := digits(s, 5, 2)
	if !ok || m < 1 || m > 12 {
		return 0, 0
	}
	if len(s) == 7 || s[7] != '-' {
		return 7, 2
	}
	d, ok := digits(s, 8, 2)
	if !ok || d < 1 || d > daysIn(y, m) {
		return 0, 0
	}
	return 10, 3
}

// daysIn returns the number of days of month m in year y (Gregorian).
func daysIn(y, m int) int {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// parseTime reads hh:mm:ss(.s+)? (00:00:00 to 23:59:60) at the start of s
// and returns the bytes consumed.
func parseTime(s []byte) (int, bool) {
	h, ok1 := digits(s, 0, 2)
	m, ok2 := digits(s, 3, 2)
	sec, ok3 := digits(s, 6, 2)
	if !ok1 || !ok2 || !ok3 || s[2] != ':' || s[5] != ':' || h > 23 || m > 59 || sec > 60 {
		return 0, false
	}
	n := 8
	if n < len(s) && s[n] == '.' {
		j := n + 1
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if j == n+1 {
			return 0, false
		}
		n = j
	}
	return n, true
}

// parseZone reads Z or ±hh:mm (up to +14:00) at the start of s and
// returns the bytes consumed and the offset in minutes.
func parseZone(s []byte) (int, int, bool) {
	if len(s) > 0 && s[0] == 'Z' {
		return 1, 0, true
	}
	if len(s) < 6 || (s[0] != '+' && s[0] != '-') || s[3] != ':' {
		return 0, 0, false
	}
	h, ok1 := digits(s, 1, 2)
	m, ok2 := digits(s, 4, 2)
	if !ok1 || !ok2 || m > 59 || h > 14 || (h == 14 && m != 0) {
		return 0, 0, false
	}
	off := h*60 + m
	if s[0] == '-' {
		off = -off
	}
	return 6, off, true
}

// checkDateTime validates a dateTime (partial dates allowed; a time needs
// seconds and a timezone) or, with instant, a full instant.
func checkDateTime(s []byte, instant bool) bool {
	n, prec := datePrefix(s)
	if n == 0 {
		return false
	}
	if n == len(s) {
		return !instant
	}
	if prec != 3 || s[n] != 'T' {
		return false
	}
	t, ok := parseTime(s[n+1:])
	if !ok {
		return false
	}
	z, _, ok := parseZone(s[n+1+t:])
	return ok && n+1+t+z == len(s)
}

// compareDateTimes compares two date or dateTime values at their common
// precision (year, month, day, or time as instants). ambiguous is set when
// they are equal at that precision but one is more precise, so that
// FHIRPath comparison would be empty. ok is false for malformed values.
func compareDateTimes(a, b []byte) (c int, ambiguous, ok bool) {
	pa, fa, ta, oka := dateTimeValue(a)
	pb, fb, tb, okb := dateTimeValue(b)
	if !oka || !okb {
		return 0, false, false
	}
	if pa == 4 && pb == 4 {
		return ta.Compare(tb), false, true
	}
	for i := range min(pa, pb, 3) {
		if fa[i] != fb[i] {
			if fa[i] < fb[i] {
				return -1, false, true
			}
			return 1, false, true
		}
	}
	return 0, pa != pb, true
}

// The zones furthest east and west: a date or dateTime without a zone
// can mean its span in any of them (FHIRPath lowBoundary and
// highBoundary).
var (
	zoneEast = time.FixedZone("", 14*3600)
	zoneWest = time.FixedZone("", -12*3600)
)

// boundariesOrdered reports whether date or dateTime a's low boundary is
// not after b's high boundary, as R5 states per-1 (start.lowBoundary() <=
// end.highBoundary()), so that values of different precisions compare by
// the span each can mean: 2026-12-06 is not after 2026-12-06T08:00:00Z,
// 2026-12-31 not after 2026-12. A time's span runs to the last instant its
// precision leaves open (08:00:00Z to 08:00:00.999999999Z). Two dates
// (no time, no zone) are read in the same zone, whatever it is; a date
// against a time in any of them, the widest: from 00:00 at +14:00 for a,
// to 24:00 at -12:00 for b. ok is false for malformed values.
func boundariesOrdered(a, b []byte) (ordered, ok bool) {
	pa, fa, ta, oka := dateTimeValue(a)
	pb, fb, tb, okb := dateTimeValue(b)
	if !oka || !okb {
		return false, false
	}
	low := ta
	if pa < 4 {
		zone := time.UTC // two dates: their own (one) zone
		if pb == 4 {
			zone = zoneEast
		}
		low = time.Date(fa[0], time.Month(fa[1]), fa[2], 0, 0, 0, 0, zone)
	}
	var high time.Time
	if pb < 4 {
		zone := time.UTC
		if pa == 4 {
			zone = zoneWest
		}
		end := time.Date(fb[0], time.Month(fb[1]), fb[2], 0, 0, 0, 0, zone)
		switch pb {
		case 1:
			end = end.AddDate(1, 0, 0)
		case 2:
			end = end.AddDate(0, 1, 0)
		default:
			end = end.AddDate(0, 0, 1)
		}
		high = end.Add(-time.Nanosecond)
	} else {
		high = tb.Add(fractionRest(b))
	}
	return !low.After(high), true
}

// fractionRest is how much later than the instant it names the last
// instant a well-formed dateTime with a time can mean: what its fraction
// of a second leaves unsaid (999999999ns without one, 0 with 9 digits).
func fractionRest(s []byte) time.Duration {
	t := bytes.IndexByte(s, 'T')
	if t >= 0 && t+8 < len(s) && s[t+7] == '6' && s[t+8] == '0' {
		return 0 // a leap second: dateTimeValue gives its minute's last instant
	}
	if t < 0 || t+9 >= len(s) || s[t+9] != '.' {
		return time.Second - time.Nanosecond
	}
	k := 0
	for i := t + 10; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		k++
	}
	rest := time.Duration(1)
	for ; k < 9; k++ {
		rest *= 10
	}
	return rest - 1
}

// dateTimeValue parses a date or dateTime into its precision (1 year,
// 2 month, 3 day, 4 time), its literal year, month and day, and, with a
// time, the instant.
func dateTimeValue(s []byte) (int, [3]int, time.Time, bool) {
	var f [3]int
	n, prec := datePrefix(s)
	if n == 0 {
		return 0, f, time.Time{}, false
	}
	f[0], _ = digits(s, 0, 4)
	f[1], f[2] = 1, 1
	if prec >= 2 {
		f[1], _ = digits(s, 5, 2)
	}
	if prec == 3 {
		f[2], _ = digits(s, 8, 2)
	}
	if n == len(s) {
		return prec, f, time.Time{}, true
	}
	if prec != 3 || s[n] != 'T' {
		return 0, f, time.Time{}, false
	}
	ts := s[n+1:]
	tl, ok := parseTime(ts)
	if !ok {
		return 0, f, time.Time{}, false
	}
	z, off, ok := parseZone(ts[tl:])
	if !ok || n+1+tl+z != len(s) {
		return 0, f, time.Time{}, false
	}
	h, _ := digits(ts, 0, 2)
	mi, _ := digits(ts, 3, 2)
	sec, _ := digits(ts, 6, 2)
	nanos := 0
	for i, scale := 9, 100000000; i < tl && scale > 0; i, scale = i+1, scale/10 {
		nanos += int(ts[i]-'0') * scale
	}
	if sec == 60 {
		// A leap second lies in the minute it ends: its last instant,
		// not the next minute's first (time.Date's reading).
		sec, nanos = 59, 999999999
	}
	return 4, f, time.Date(f[0], time.Month(f[1]), f[2], h, mi, sec, nanos, time.FixedZone("", off*60)), true
}
