package store

import "time"

// PoolStats is a backend's connections and write queue at one moment, for
// the operator's metrics and /readyz. Reading it runs no query.
type PoolStats struct {
	// InUse, Idle, Open and Max count the connections of the pool reads
	// (and, on PostgreSQL, write transactions) take: in use by a caller,
	// idle, open (in use, idle or being opened) and the most it opens.
	InUse, Idle, Open, Max int64
	// Waits counts the acquires that found no idle connection and waited
	// since the store opened, WaitDuration the time they waited in total,
	// Canceled the acquires given up before a connection was free (their
	// context ended). SQLite counts no canceled acquires.
	Waits        int64
	WaitDuration time.Duration
	Canceled     int64
	// WriteQueue is the number of write transactions waiting for a write
	// lane; at WriteQueueMax waiting, a write fails with ErrBusy.
	// WriteLanesBusy of WriteLanes lanes are running.
	WriteQueue, WriteQueueMax  int64
	WriteLanesBusy, WriteLanes int64
}

// StatsReporter is a store that reports its PoolStats (both backends do).
type StatsReporter interface {
	PoolStats() PoolStats
}
