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
		{ErrConflict, slog.LevelError},
	} {
		if got := LogLevel(tc.err); got != tc.want {
			t.Errorf("LogLevel(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
