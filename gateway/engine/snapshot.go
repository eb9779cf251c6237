package engine

import (
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// A search of AuditEvents pages over a snapshot (http.html#paging: the
// server SHOULD make the pages a consistent set). Every request leaves an
// AuditEvent, a page's own included, and an auditor paging a patient's
// trail reads AuditEvents that name that patient: unbounded, each page's
// own record became a new match, so that newest first (_sort=-date, by
// offset) a page repeated the last entry of the page before, and oldest
// first (the _cursor order) the walk grew by one match a page and, a match
// a page, never ended. So a search of AuditEvents is bounded to those
// recorded before it began, by a criterion the answer shows and its paging
// links keep: _lastUpdated=lt<instant>. An AuditEvent's meta.lastUpdated
// is the instant it was recorded (its recorded element, searched as date),
// and _lastUpdated is a column of every stored row, which the default
// order pages by: the bound costs a comparison where a date criterion
// would look each match up in the date index (100,000 AuditEvents
// counted for a total). The other types page as before: a client
// syncing Observations pages to see the writes between pages (docs/fhir.md,
// "Paging and changes").

// snapshotType is the type whose searches are snapshots.
const snapshotType = "AuditEvent"

// snapshotLayout is the bound's instant: UTC, in milliseconds, as the
// AuditEvents' recorded instants are.
const snapshotLayout = "2006-01-02T15:04:05.000Z"

// snapshotParam is the parameter the bound is a value of.
const snapshotParam = "_lastUpdated"

// auditSnapshot returns the parameters of a search of typ bounded to a
// snapshot, and the _lastUpdated value it added ("" when it added none):
// for AuditEvent, _lastUpdated=lt<B>, B the engine clock's boundary (every AuditEvent
// recorded before B was recorded before the search began, every one
// recorded after it, this request's own included, is at B or later),
// unless params already hold such a bound (bounded), or one more value
// would take the search beyond the engine's search.Limits (a search that
// already gives _lastUpdated 5 times, or 30 values in all: it is then run
// as it came, not refused for a parameter the client did not send).
// params is not changed. Other types are not bounded.
func (e *Engine) auditSnapshot(typ string, params url.Values) (url.Values, string) {
	if typ != snapshotType || bounded(params, e.Now()) {
		return params, ""
	}
	values := 0
	for _, vs := range params {
		values += len(vs)
	}
	if len(params[snapshotParam]) >= e.limits.Repeats || values >= e.limits.Params {
		return params, ""
	}
	bound := "lt" + e.clock.boundary().Format(snapshotLayout)
	out := maps.Clone(params)
	if out == nil {
		out = url.Values{}
	}
	out[snapshotParam] = append(slices.Clone(params[snapshotParam]), bound)
	return out, bound
}

// bounded reports whether params bound a search of AuditEvents to those
// recorded before now already: a _lastUpdated or date (recorded) criterion
// lt<date>, one value, whose start is not after now. The next link of a
// snapshot carries one; so does a search of a past period.
func bounded(params url.Values, now time.Time) bool {
	for _, v := range slices.Concat(params[snapshotParam], params["date"]) {
		d, ok := strings.CutPrefix(v, "lt")
		if !ok || strings.ContainsAny(d, `,\`) {
			continue
		}
		if low, _, ok := search.DateRange(d); ok && !low.After(now) {
			return true
		}
	}
	return false
}
