package search

import (
	"math"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/text/unicode/norm"
)

// splitEscaped splits s at every sep that is not escaped by a backslash
// (search.html#escaping). The pieces keep their escapes; unescape them once
// they are split at every level (',' then '|').
func splitEscaped(s string, sep byte) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++ // the next byte is escaped (sep is ASCII, so never a UTF-8 continuation)
		case sep:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// unescape undoes the FHIR search escapes \, \| \$ and \\. A backslash
// before any other character, or at the end, is kept as it is.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) {
			switch s[i+1] {
			case ',', '|', '$', '\\':
				b.WriteByte(s[i+1])
				i++
				continue
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}

// Token is the value of a token parameter that matches system and code
// exactly, whatever characters they hold: each escaped (search.html#escaping)
// and joined by "|". A value built from data (an identifier) is
// searched with it, never by joining the strings. (An empty code is, as
// in "system|", any code of the system.)
func Token(system, code string) string { return escape(system) + "|" + escape(code) }

// escape is the inverse of unescape: it escapes \ , | and $.
func escape(s string) string {
	if !strings.ContainsAny(s, `\,|$`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\', ',', '|', '$':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// splitPrefix takes the comparison prefix off a date, number or quantity
// value; without one the prefix is eq.
func splitPrefix(s string) (Prefix, string) {
	if len(s) >= 2 {
		switch p := Prefix(s[:2]); p {
		case PrefixEq, PrefixNe, PrefixGt, PrefixLt, PrefixGe, PrefixLe, PrefixSa, PrefixEb, PrefixAp:
			return p, s[2:]
		}
	}
	return PrefixEq, s
}

// parseDecimal parses a decimal as written in a search, [-]digits[.digits]
// [e[+-]digits], and returns its value and its precision: half the unit of
// its last significant digit (100 -> 0.5, 100.00 -> 0.005, 1e2 -> 50,
// 1.50e2 -> 0.5).
func parseDecimal(s string) (v, precision float64, ok bool) {
	i := 0
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		i++
	}
	intDigits := 0
	for i < len(s) && isDigit(s[i]) {
		i++
		intDigits++
	}
	frac := 0
	if i < len(s) && s[i] == '.' {
		i++
		for i < len(s) && isDigit(s[i]) {
			i++
			frac++
		}
		if frac == 0 {
			return 0, 0, false
		}
	}
	if intDigits == 0 {
		return 0, 0, false
	}
	exp := 0
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		start := i
		if i < len(s) && (s[i] == '-' || s[i] == '+') {
			i++
		}
		n := 0
		for i < len(s) && isDigit(s[i]) {
			i++
			n++
		}
		if n == 0 || n > 4 {
			return 0, 0, false
		}
		exp, _ = strconv.Atoi(s[start:i])
	}
	if i != len(s) {
		return 0, 0, false
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, 0, false
	}
	// Beyond the decimals the gateway stores (0, or 1e-300 to 1e300 in
	// magnitude: r4.ExactDecimal) a value cannot be compared: 1e-400
	// would read as 0 and match a stored 0.
	mantissa, _, _ := strings.Cut(strings.ToLower(s), "e")
	if a := math.Abs(v); (a == 0 && strings.ContainsAny(mantissa, "123456789")) || a > 1e300 || (a != 0 && a < 1e-300) {
		return 0, 0, false
	}
	return v, 0.5 * math.Pow10(exp-frac), true
}

// parseToken parses code, |code, system|code or system| (escaped).
func parseToken(raw string) (Value, bool) {
	parts := splitEscaped(raw, '|')
	switch len(parts) {
	case 1:
		code := unescape(parts[0])
		return Value{Code: code}, code != ""
	case 2:
		v := Value{System: unescape(parts[0]), Code: unescape(parts[1]), HasSystem: true}
		return v, v.System != "" || v.Code != ""
	}
	return Value{}, false
}

// parseOfType parses an :of-type value, type-system|type-code|value
// (search.html#token: all three parts; the system may be empty), into
// the System and Code of the of-type rows (OfTypeSystem).
func parseOfType(raw string) (Value, bool) {
	parts := splitEscaped(raw, '|')
	if len(parts) != 3 {
		return Value{}, false
	}
	code, val := unescape(parts[1]), unescape(parts[2])
	return Value{System: OfTypeSystem(unescape(parts[0]), code), Code: val, HasSystem: true}, code != "" && val != ""
}

// parseQuantity parses [prefix]number[|system|code] (system may be empty).
func parseQuantity(raw string) (Value, bool) {
	prefix, rest := splitPrefix(raw)
	parts := splitEscaped(rest, '|')
	if len(parts) != 1 && len(parts) != 3 {
		return Value{}, false
	}
	n, prec, ok := parseDecimal(unescape(parts[0]))
	if !ok {
		return Value{}, false
	}
	v := Value{Prefix: prefix, Number: n, Precision: prec}
	if len(parts) == 3 {
		v.System, v.Code = unescape(parts[1]), unescape(parts[2])
		v.HasSystem = v.System != ""
	}
	return v, true
}

// parseReferenceValue parses a reference search value: Type/id (a
// version-specific Type/id/_history/n counts as Type/id), a bare id, or an
// absolute URL / urn; an absolute URL below base (the server's own FHIR
// base) is read as the Type/id it names. typeMod is the :Type modifier, if any: every value
// carries it as its RefType. A bare id gets the type of the modifier, or
// the parameter's only target type.
func parseReferenceValue(raw string, p Param, typeMod, base string) (Value, bool) {
	s := LocalReference(base, unescape(raw))
	if s == "" {
		return Value{}, false
	}
	if strings.HasPrefix(s, "urn:") || strings.Contains(s, "://") {
		return Value{RefURL: s, RefType: typeMod}, true // a URL names no type the modifier could be checked against
	}
	if strings.Contains(s, "/") {
		rt, id, url := parseReference(s)
		if url != "" || (typeMod != "" && rt != typeMod) ||
			(len(p.Targets) > 0 && !slices.Contains(p.Targets, rt)) {
			return Value{}, false
		}
		return Value{RefType: rt, RefID: id}, true
	}
	if !validID(s) {
		return Value{}, false
	}
	t := typeMod
	if t == "" && len(p.Targets) == 1 {
		t = p.Targets[0]
	}
	return Value{RefType: t, RefID: s}, true
}

// modifierAllowed reports whether a parameter accepts a modifier (other
// than missing, which every type accepts).
func modifierAllowed(p Param, mod string) bool {
	if mod == "" {
		return true
	}
	switch p.Type {
	case TypeToken:
		return mod == "not" || mod == "text" && p.Text || mod == "of-type" && p.OfType
	case TypeString:
		return mod == "exact" || mod == "contains"
	case TypeURI:
		return mod == "below" || mod == "above"
	case TypeReference:
		if mod == "identifier" {
			return true
		}
		return isResourceType(mod) && (len(p.Targets) == 0 || slices.Contains(p.Targets, mod))
	}
	return false
}

// parseValue parses one (OR) value of a clause of p with modifier mod.
func parseValue(p Param, mod, raw, base string) (Value, bool) {
	switch p.Type {
	case TypeToken:
		if mod == "text" {
			s := unescape(raw)
			return Value{Str: s}, s != ""
		}
		if mod == "of-type" {
			return parseOfType(raw)
		}
		return parseToken(raw)
	case TypeString, TypeURI:
		s := unescape(raw)
		if p.Type == TypeString && mod == "exact" {
			s = norm.NFC.String(s) // as Extract keeps Entry.Exact
		}
		return Value{Str: s}, s != ""
	case TypeDate:
		prefix, rest := splitPrefix(raw)
		lo, hi, ok := DateRange(unescape(rest))
		return Value{Prefix: prefix, Low: lo, High: hi}, ok
	case TypeNumber:
		prefix, rest := splitPrefix(raw)
		n, prec, ok := parseDecimal(unescape(rest))
		return Value{Prefix: prefix, Number: n, Precision: prec}, ok
	case TypeQuantity:
		return parseQuantity(raw)
	case TypeReference:
		if mod == "identifier" {
			return parseToken(raw)
		}
		return parseReferenceValue(raw, p, mod, base) // mod is "" or a resource type
	}
	return Value{}, false
}

// storedDecimals says which decimals a search can compare (parseDecimal):
// 1e-400 is a valid decimal, but not one the gateway stores.
const storedDecimals = "; the decimal 0 or of magnitude 1e-300 to 1e300, as the gateway stores them"

// valueFormat describes, for error messages, what a value of a type looks
// like (the message never repeats the value itself).
func valueFormat(t Type, mod string) string {
	switch {
	case mod == "missing":
		return "true or false"
	case t == TypeToken && mod == "of-type":
		return "type-system|type-code|value (all three parts; an empty system is no system)"
	case mod == "identifier" || t == TypeToken && mod != "text":
		return "token ([system|]code, at most one unescaped |)"
	case t == TypeDate:
		return "date ([prefix]yyyy[-mm[-dd[Thh:mm[:ss[.fff]][Z|+hh:mm]]]])"
	case t == TypeNumber:
		return "number ([prefix]decimal" + storedDecimals + ")"
	case t == TypeQuantity:
		return "quantity ([prefix]decimal[|system|code]" + storedDecimals + ")"
	case t == TypeReference:
		return "reference (Type/id, id or absolute URL, of an allowed target type)"
	}
	return "non-empty " + string(t)
}

// LocalReference returns ref relative to base, the server's own FHIR base
// URL (no trailing slash), when ref is an absolute URL below it:
// "[base]/Patient/1" is "Patient/1", "[base]/Patient?identifier=x" is
// "Patient?identifier=x". Any other ref, and every ref when base is "",
// is returned as it is. The scheme and host compare without regard to
// case (RFC 3986 §6.2.2.1), the path exactly.
func LocalReference(base, ref string) string {
	if base == "" || len(ref) <= len(base) || ref[len(base)] != '/' {
		return ref
	}
	head, path := splitAuthority(ref[:len(base)])
	bhead, bpath := splitAuthority(base)
	if path != bpath || !strings.EqualFold(head, bhead) {
		return ref
	}
	return ref[len(base)+1:]
}

// splitAuthority splits an absolute URL into its scheme and authority
// ("http://host:port") and the rest.
func splitAuthority(u string) (head, path string) {
	i := strings.Index(u, "://")
	if i < 0 {
		return "", u
	}
	j := strings.IndexByte(u[i+3:], '/')
	if j < 0 {
		return u, ""
	}
	return u[:i+3+j], u[i+3+j:]
}
