package sqlstore

import "time"

// Times are stored as unix milliseconds; the zero time stands for an open
// end: minMS below every date, maxMS above every date.
const (
	minMS = -62135596800000 // 0001-01-01T00:00:00Z
	maxMS = 253402300799999 // 9999-12-31T23:59:59.999Z
)

// lowMS is the stored form of a range start (zero: no start).
func lowMS(t time.Time) int64 {
	if t.IsZero() {
		return minMS
	}
	return clampMS(t.UnixMilli())
}

// entryHighMS is the stored form of an entry's range end (zero: no end).
func entryHighMS(t time.Time) int64 {
	if t.IsZero() {
		return maxMS
	}
	return clampMS(t.UnixMilli())
}

func clampMS(ms int64) int64 {
	return min(max(ms, minMS), maxMS)
}
