package sqlstore

import "time"

// Times are stored as unix milliseconds between minMS and maxMS (the
// search index's MinTime and MaxTime; an open range's end is one of them).
// The zero time is 0001-01-01T00:00:00Z, minMS: a time like any other (an
// entry ending there ends there, not nowhere).
const (
	minMS = -62135596800000 // 0001-01-01T00:00:00Z
	maxMS = 253402300799999 // 9999-12-31T23:59:59.999Z
)

// storedMS is the stored form of a time, a range's start or end.
func storedMS(t time.Time) int64 {
	return clampMS(t.UnixMilli())
}

func clampMS(ms int64) int64 {
	return min(max(ms, minMS), maxMS)
}
