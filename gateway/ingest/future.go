package ingest

import (
	"fmt"
	"math"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// LastUpdatedAhead is how far a record's source.lastUpdated may be ahead
// of the gateway's clock: clocks that keep time (NTP) differ by seconds,
// and a few minutes leave room for one that drifts. A record further
// ahead was not changed in the future; its time is wrong, most often a
// local time sent with Z (13 hours ahead in Auckland) or with another
// zone's offset. Stored, it would refuse every correct later version as
// older (record-version-stale) until the clock caught up with it.
const LastUpdatedAhead = 5 * time.Minute

// RuleLastUpdatedFuture is the rule id of a record whose
// source.lastUpdated is more than LastUpdatedAhead ahead of the gateway's
// clock.
const RuleLastUpdatedFuture = "source.last-updated-future"

// checkNotFuture refuses rec when its source.lastUpdated is more than
// LastUpdatedAhead after now, saying by how much and the likely cause,
// never the value.
func checkNotFuture(rec mapping.Record, now time.Time) error {
	at, ok := instant(rec.Env().Source.LastUpdated)
	if !ok {
		return nil
	}
	ahead := at.Sub(now)
	if ahead <= LastUpdatedAhead {
		return nil
	}
	return &outcome.Error{Kind: outcome.Unprocessable, Issues: []outcome.Issue{{
		Severity: "error", Code: "business-rule", Rule: RuleLastUpdatedFuture,
		Pointer: "/source/lastUpdated", Expression: "source.lastUpdated",
		Message: fmt.Sprintf("source.lastUpdated is %s ahead of the gateway's clock (clocks may differ by %s): a record "+
			"is not changed in the future. Most often this is a local time sent with Z or with another zone's offset; "+
			"send the time the record was last changed with the UTC offset of the clock that wrote it (09:30 in "+
			"Auckland in summer is 09:30:00+13:00, not 09:30:00Z) or converted to UTC, and check the sending "+
			"system's clock", aheadText(at, now), roughly(LastUpdatedAhead))}}}
}

// aheadText is how far at is after now, for people: roughly, or, beyond
// what a time.Duration holds (292 years: a mistyped year), in days.
func aheadText(at, now time.Time) string {
	if d := at.Sub(now); d < math.MaxInt64 {
		return roughly(d)
	}
	return fmt.Sprintf("%d days", (at.Unix()-now.Unix())/86400)
}

// roughly writes a positive duration for people: whole days from two
// days, else hours and minutes, else minutes (at least 1), rounded down.
func roughly(d time.Duration) string {
	plural := func(n int64, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return fmt.Sprintf("%d %ss", n, unit)
	}
	switch h, m := int64(d/time.Hour), int64(d%time.Hour/time.Minute); {
	case h >= 48:
		return plural(h/24, "day")
	case h > 0 && m > 0:
		return plural(h, "hour") + " " + plural(m, "minute")
	case h > 0:
		return plural(h, "hour")
	default:
		return plural(max(m, 1), "minute")
	}
}
