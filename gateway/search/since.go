package search

import "time"

// SinceForm says what _since takes (history, $everything, $export): R4
// makes it an instant, and the gateway takes no less. A date alone, or a
// time without its zone, names no instant: taken in UTC it would leave out
// what was written late on that day east of UTC, and _since is the
// watermark a client syncs from, which must not skip changes.
const SinceForm = "_since must be an instant: a date and a time to the second with its time zone, such as " +
	"2026-12-06T14:50:00Z (or an offset such as +01:00 in place of the Z); a date alone, a time without seconds or " +
	"without a time zone is not taken"

// ParseSince reads a _since instant; msg ("" for none) says what is wrong,
// never quoting v.
func ParseSince(v string) (t time.Time, msg string) {
	t, err := time.Parse(time.RFC3339Nano, v)
	switch {
	case err == nil:
		return t, ""
	case PlusAsSpace(v):
		return t, "_since holds a space where its time zone's + was: " + PlusAdvice
	default:
		return t, SinceForm
	}
}
