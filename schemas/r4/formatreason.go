package r4

import "fmt"

// formatReason says why s, which checkString refused as a p, is not one,
// and how it is written: the validator's message for rule
// primitive-format. It never repeats the value (it may be PHI), only its
// shape (a beginner's review: "the value is not a valid FHIR dateTime"
// said neither what was wrong nor what to write).
func formatReason(p prim, s []byte) string {
	switch p {
	case pDate, pDateTime, pInstant:
		return dateReason(p, s)
	case pTime:
		return "a time is written hh:mm:ss, optionally with a fraction of a second (.sss), from 00:00:00 to 23:59:59 " +
			"(23:59:60 for a leap second), with no time zone"
	case pID:
		if len(s) > 64 {
			return "an id is at most 64 characters long"
		}
		return "an id holds only the letters A-Z and a-z, the digits 0-9, '-' and '.' (1 to 64 of them)"
	case pCode:
		if len(s) > maxStringBytes {
			return fmt.Sprintf("a code is at most %d bytes long", maxStringBytes)
		}
		if !NoControl(s) {
			return "a code holds no control characters"
		}
		return "a code has no leading or trailing whitespace and no whitespace twice in a row"
	case pString, pMarkdown:
		if len(s) > maxStringBytes {
			return fmt.Sprintf("a %s is at most %d bytes long", primName(p), maxStringBytes)
		}
		return "a " + primName(p) + " holds no control characters other than tab, carriage return and line feed"
	case pURI, pURL, pCanonical:
		if !noSpace(s) {
			return "a " + primName(p) + " holds no whitespace or control characters (escape a space as %20)"
		}
		return "a urn:uuid is urn:uuid: followed by a lower-case UUID (8-4-4-4-12 hexadecimal digits), and a urn:oid is " +
			"urn:oid: followed by numbers separated by dots, such as urn:oid:2.16.840.1.113883"
	case pUUID:
		return "a uuid is urn:uuid: followed by a lower-case UUID: 8-4-4-4-12 hexadecimal digits"
	case pOID:
		return "an oid is urn:oid: followed by numbers separated by dots, the first 0, 1 or 2, such as urn:oid:2.16.840.1.113883"
	case pBase64Binary:
		return "base64Binary holds base64: the letters, digits, '+' and '/', in groups of four, the last padded with '='"
	}
	return "see the type's format in the FHIR R4 datatypes"
}

// dateForms are how each date type is written.
var dateForms = map[prim]string{
	pDate:     "a date is written YYYY, YYYY-MM or YYYY-MM-DD",
	pDateTime: "a dateTime is written YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss(.sss) followed by Z or an offset such as -05:00",
	pInstant:  "an instant is written YYYY-MM-DDThh:mm:ss(.sss) followed by Z or an offset such as -05:00",
}

// dateReason is formatReason for a date, dateTime or instant.
func dateReason(p prim, s []byte) string {
	form := dateForms[p]
	y, ok := digits(s, 0, 4)
	if !ok || y == 0 {
		return "it must begin with a four-digit year (not 0000): " + form
	}
	if len(s) > 4 && s[4] == '-' {
		if m, ok := digits(s, 5, 2); !ok || m < 1 || m > 12 {
			return "the month must be two digits, 01 to 12: " + form
		}
		if len(s) > 7 && s[7] == '-' {
			m, _ := digits(s, 5, 2)
			if d, ok := digits(s, 8, 2); !ok || d < 1 || d > daysIn(y, m) {
				return "the day must be two digits and exist in that month: " + form
			}
		}
	}
	n, prec := datePrefix(s)
	switch {
	case n == len(s): // a date alone: only an instant refuses it
		return "an instant needs a time to the second and a time zone after the date: " + form
	case p == pDate:
		return "a date has no time or time zone (a time belongs in a dateTime or an instant): " + form
	case s[n] == ' ':
		return "the time is separated from the date by T, not a space: " + form
	case s[n] == 't':
		return "the T between the date and the time is upper case: " + form
	case s[n] != 'T':
		return "the date must be YYYY-MM-DD, with '-' between its parts: " + form
	case prec != 3:
		return "a time needs the whole date before it (YYYY-MM-DD): " + form
	}
	rest := s[n+1:]
	t, ok := parseTime(rest)
	if !ok {
		if len(rest) >= 5 && rest[2] == ':' && (len(rest) == 5 || rest[5] != ':') {
			return "the time must have seconds (hh:mm:ss): " + form
		}
		if len(rest) > 8 && rest[8] == '.' && (len(rest) == 9 || rest[9] < '0' || rest[9] > '9') {
			return "a fraction of a second needs digits after the '.': " + form
		}
		return "the time must be hh:mm:ss, hours 00 to 23, minutes 00 to 59, seconds 00 to 59 (60 for a leap second): " + form
	}
	zone := rest[t:]
	if len(zone) == 0 {
		return "a time must have a time zone: add Z (UTC) or an offset such as -05:00: " + form
	}
	z, _, ok := parseZone(zone)
	if !ok && zone[0] == 'z' {
		return "the Z of UTC is upper case: " + form
	}
	if !ok {
		return "the time zone must be Z or an offset ±hh:mm, at most ±14:00: " + form
	}
	if z < len(zone) {
		return "nothing may follow the time zone: " + form
	}
	return form
}
