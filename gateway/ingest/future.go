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

// RuleTimeFuture is the rule id of a record with a clinical time
// (mapping.ClinicalTimes) more than LastUpdatedAhead ahead of the
// gateway's clock: what it describes has not happened yet, and the time
// is wrong, most often a local time sent with Z.
const RuleTimeFuture = "record.time-future"

// checkNotFuture refuses rec when its source.lastUpdated, or one of its
// clinical times (mapping.ClinicalTimes), is more than LastUpdatedAhead
// after now: one issue per time, at its pointer, saying by how much and
// the likely cause, never the value. A clinical time is checked with or
// without a source.lastUpdated (with one, time.after-last-updated
// compares the two, but lets a time be later by mapping.LastUpdatedSkew),
// but not in a withdrawal: the times of what it withdraws (perhaps stored
// before this check, and wrong) do not matter.
func checkNotFuture(rec mapping.Record, now time.Time) error {
	var issues []outcome.Issue
	if at, ok := instant(rec.Env().Source.LastUpdated); ok && at.Sub(now) > LastUpdatedAhead {
		issues = append(issues, outcome.Issue{
			Severity: "error", Code: "business-rule", Rule: RuleLastUpdatedFuture,
			Pointer: "/source/lastUpdated", Expression: "source.lastUpdated",
			Message: fmt.Sprintf("source.lastUpdated is %s ahead of the gateway's clock (clocks may differ by %s): a record "+
				"is not changed in the future. Most often this is a local time sent with Z or with another zone's offset; "+
				"send the time the record was last changed with the UTC offset of the clock that wrote it (09:30 in "+
				"Auckland in summer is 09:30:00+13:00, not 09:30:00Z) or converted to UTC, and check the sending "+
				"system's clock", aheadText(at, now), roughly(LastUpdatedAhead))})
	}
	withdrawn := rec.Env().Source.Status == "entered-in-error"
	for _, c := range mapping.ClinicalTimes(rec) {
		if withdrawn {
			break
		}
		at, ok := instant(c.At)
		if !ok || at.Sub(now) <= LastUpdatedAhead {
			continue
		}
		issues = append(issues, outcome.Issue{
			Severity: "error", Code: "business-rule", Rule: RuleTimeFuture,
			Pointer: c.Pointer, Expression: c.Expression(),
			Message: fmt.Sprintf("%s is %s ahead of the gateway's clock (clocks may differ by %s): a record does not "+
				"describe what has not happened yet. Most often this is a local time sent with Z or with another zone's "+
				"offset; send the time with the UTC offset of the clock that took it (09:30 in Auckland in summer is "+
				"09:30:00+13:00, not 09:30:00Z) or converted to UTC, and check the sending system's clock",
				c.Expression(), aheadText(at, now), roughly(LastUpdatedAhead))})
	}
	if len(issues) == 0 {
		return nil
	}
	return &outcome.Error{Kind: outcome.Unprocessable, Issues: issues}
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
