package search

import (
	"time"
)

// MinTime is the Low of a range open at its start (a Period without start):
// 0001-01-01T00:00:00Z.
func MinTime() time.Time { return time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC) }

// MaxTime is the High of a range open at its end (a Period without end):
// 9999-12-31T23:59:59.999Z.
func MaxTime() time.Time { return time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC) }

// DateRange parses a FHIR date, dateTime or instant, partial or not, as
// a search value or an element value, and returns the instants it covers,
// [low, high] inclusive, in UTC, in whole milliseconds.
//
// Accepted: YYYY, YYYY-MM, YYYY-MM-DD, YYYY-MM-DDThh:mm, YYYY-MM-DDThh:mm:ss
// with optional fraction, each time optionally followed by Z or ±hh:mm. A
// value without a zone (a date, or a time without offset) is taken as UTC:
// FHIR leaves it ambiguous and the gateway has no better local zone.
//
// The range is the value's precision: a year, month or day; a minute;
// a second (low .. low+999ms); 1/10 or 1/100 s likewise; a millisecond or
// finer is exact (digits beyond milliseconds are truncated).
func DateRange(s string) (low, high time.Time, ok bool) {
	p := dateParser{s: s}
	year, ok := p.digits(4)
	if !ok || year < 1 {
		return time.Time{}, time.Time{}, false
	}
	if p.done() {
		low = time.Date(year, 1, 1, 0, 0, 0, 0, time.UTC)
		return low, low.AddDate(1, 0, 0).Add(-time.Millisecond), true
	}
	if !p.lit('-') {
		return time.Time{}, time.Time{}, false
	}
	month, ok := p.digits(2)
	if !ok || month < 1 || month > 12 {
		return time.Time{}, time.Time{}, false
	}
	if p.done() {
		low = time.Date(year, time.Month(month), 1, 0, 0, 0, 0, time.UTC)
		return low, low.AddDate(0, 1, 0).Add(-time.Millisecond), true
	}
	if !p.lit('-') {
		return time.Time{}, time.Time{}, false
	}
	day, ok := p.digits(2)
	if !ok || day < 1 || day > daysIn(year, month) {
		return time.Time{}, time.Time{}, false
	}
	if p.done() {
		low = time.Date(year, time.Month(month), day, 0, 0, 0, 0, time.UTC)
		return low, low.AddDate(0, 0, 1).Add(-time.Millisecond), true
	}
	if !p.lit('T') {
		return time.Time{}, time.Time{}, false
	}
	hour, ok1 := p.digits(2)
	ok2 := p.lit(':')
	minute, ok3 := p.digits(2)
	if !ok1 || !ok2 || !ok3 || hour > 23 || minute > 59 {
		return time.Time{}, time.Time{}, false
	}
	sec, nanos := 0, 0
	unit := time.Minute
	if p.lit(':') {
		if sec, ok = p.digits(2); !ok || sec > 60 {
			return time.Time{}, time.Time{}, false
		}
		unit = time.Second
		if p.lit('.') {
			n := 0
			for !p.done() && isDigit(p.s[p.i]) {
				if n < 9 {
					nanos = nanos*10 + int(p.s[p.i]-'0')
					unit /= 10
				}
				n++
				p.i++
			}
			if n == 0 {
				return time.Time{}, time.Time{}, false
			}
			for k := min(n, 9); k < 9; k++ {
				nanos *= 10
			}
		}
	}
	if sec == 60 {
		// A leap second (FHIR's dateTime allows :60) lies in the minute it
		// ends, and in its day: it is indexed as that minute's last
		// instant, not as the next minute's first (time.Date's reading,
		// which filed 23:59:60 under the next day).
		sec, nanos, unit = 59, 999999999, time.Millisecond
	}
	loc := time.UTC
	if !p.done() {
		offset, ok := p.zone()
		if !ok || !p.done() {
			return time.Time{}, time.Time{}, false
		}
		loc = time.FixedZone("", offset)
	}
	low = time.Date(year, time.Month(month), day, hour, minute, sec, nanos, loc).UTC()
	low = low.Truncate(time.Millisecond)
	high = low
	if unit > time.Millisecond {
		high = low.Add(unit - time.Millisecond)
	}
	// A valid instant in year 0001 or 9999 can fall outside them in UTC
	// (0001-01-01T00:00:00+14:00, 9999-12-31T23:59:59-14:00). It is
	// clamped to the index's ends, not dropped: a value the store accepted
	// stays findable (ge9999-12-31, lt0001-01-02).
	return clampTime(low), clampTime(high), true
}

// clampTime limits t to [MinTime, MaxTime].
func clampTime(t time.Time) time.Time {
	if lo := MinTime(); t.Before(lo) {
		return lo
	}
	if hi := MaxTime(); t.After(hi) {
		return hi
	}
	return t
}

// dateParser is a cursor over a date string.
type dateParser struct {
	s string
	i int
}

func (p *dateParser) done() bool { return p.i >= len(p.s) }

func (p *dateParser) lit(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

// digits reads exactly n ASCII digits.
func (p *dateParser) digits(n int) (int, bool) {
	if p.i+n > len(p.s) {
		return 0, false
	}
	v := 0
	for k := 0; k < n; k++ {
		c := p.s[p.i+k]
		if !isDigit(c) {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	p.i += n
	return v, true
}

// zone reads Z or ±hh:mm and returns the offset in seconds east of UTC.
func (p *dateParser) zone() (int, bool) {
	if p.lit('Z') {
		return 0, true
	}
	sign := 1
	switch {
	case p.lit('+'):
	case p.lit('-'):
		sign = -1
	default:
		return 0, false
	}
	h, ok1 := p.digits(2)
	ok2 := p.lit(':')
	m, ok3 := p.digits(2)
	if !ok1 || !ok2 || !ok3 || h > 14 || m > 59 {
		return 0, false
	}
	return sign * (h*3600 + m*60), true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// daysIn returns the number of days of a month.
func daysIn(year, month int) int {
	return time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}
