package store

import (
	"errors"
	"fmt"
	"log/slog"
	"testing"
)

// TestLogLevel: a database unavailable (however wrapped) is a warning of a
// background task, anything else an error.
func TestLogLevel(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want slog.Level
	}{
		{Unavailable(CauseLocked, errors.New("database is locked")), slog.LevelWarn},
		{fmt.Errorf("sqlite: claim: %w", Unavailable(CauseFull, errors.New("disk full"))), slog.LevelWarn},
		{fmt.Errorf("claim: %w", ErrUnavailable), slog.LevelWarn},
		{errors.New("no such table: outbox"), slog.LevelError},
		{fmt.Errorf("claim: %w", ErrConflict), slog.LevelWarn}, // a concurrent writer won: retried at the next poll
	} {
		if got := LogLevel(tc.err); got != tc.want {
			t.Errorf("LogLevel(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestFailureRun: a run of failures of one cause is logged once at its
// level, the rest at DEBUG; another cause starts a new run; a success
// ends it, saying how long it was (a PostgreSQL review: "jobs: claim
// failed" at WARN every second of an outage).
func TestFailureRun(t *testing.T) {
	var r FailureRun
	down := Unavailable(CauseUnreachable, errors.New("connection refused"))
	steps := []struct {
		err       error // nil: a success
		level     slog.Level
		n, endedN int
	}{
		{down, slog.LevelWarn, 1, 0},
		{down, slog.LevelDebug, 2, 0},
		{fmt.Errorf("claim: %w", down), slog.LevelDebug, 3, 0},
		{Unavailable(CauseLocked, errors.New("locked")), slog.LevelWarn, 1, 0},
		{nil, 0, 0, 1},
		{nil, 0, 0, 0},
		{errors.New("no such table"), slog.LevelError, 1, 0},
		{down, slog.LevelWarn, 1, 0},
		{nil, 0, 0, 1},
	}
	for i, s := range steps {
		if s.err == nil {
			if got := r.Succeeded(); got != s.endedN {
				t.Errorf("step %d: Succeeded = %d, want %d", i, got, s.endedN)
			}
			continue
		}
		if level, n := r.Failed(s.err); level != s.level || n != s.n {
			t.Errorf("step %d: Failed = %v, %d; want %v, %d", i, level, n, s.level, s.n)
		}
	}
}
