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
		issues = append(issues, futureIssue(RuleLastUpdatedFuture, "/source/lastUpdated", "source.lastUpdated",
			"a record is not changed in the future", "the time the record was last changed", at, now))
	}
	if rec.Env().Source.Status != "entered-in-error" { // a withdrawal may take back a record stored with a future time
		for _, c := range mapping.ClinicalTimes(rec) {
			if at, ok := instant(c.At); ok && at.Sub(now) > LastUpdatedAhead {
				issues = append(issues, futureIssue(RuleTimeFuture, c.Pointer, c.Expression(),
					"a record does not describe what has not happened yet", "the time", at, now))
			}
		}
	}
	if len(issues) == 0 {
		return nil
	}
	return &outcome.Error{Kind: outcome.Unprocessable, Issues: issues}
}

// futureIssue is the error issue of rule at a time (pointer, expr) that
// lies at, ahead of now: how far, why it cannot be (claim), and what to
// send instead (what: the time to send), never the value itself.
func futureIssue(rule, pointer, expr, claim, what string, at, now time.Time) outcome.Issue {
	return outcome.Issue{
		Severity: "error", Code: "business-rule", Rule: rule, Pointer: pointer, Expression: expr,
		Message: fmt.Sprintf("%s is %s ahead of the gateway's clock (clocks may differ by up to %s): %s. Most often this is "+
			"a local time sent with Z or with another zone's offset; send %s with the UTC offset of the clock that "+
			"wrote it (09:30 in Auckland in summer is 09:30:00+13:00, not 09:30:00Z) or converted to UTC, and check "+
			"the sending system's clock", expr, aheadText(at, now), roughly(LastUpdatedAhead), claim, what)}
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
// days, else hours and minutes, else minutes (at least 1), rounded down;
// under ten minutes with the seconds too, so that a time just past the
// tolerance does not read as the tolerance itself.
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
	case m > 0 && m < 10 && d%time.Minute >= time.Second:
		return plural(m, "minute") + " " + plural(int64(d%time.Minute/time.Second), "second")
	default:
		return plural(max(m, 1), "minute")
	}
}
