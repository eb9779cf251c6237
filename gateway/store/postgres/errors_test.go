package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestMapErrCause: the server's errors that say it cannot take the
// request now are store.ErrUnavailable with the cause the log and the
// readiness probe name (a full disk, a read-only standby, a shutdown...);
// a conflict stays a conflict, and other errors are left as they are.
func TestMapErrCause(t *testing.T) {
	for _, tc := range []struct {
		code, cause string
		unavailable bool
	}{
		{"53100", store.CauseFull, true},        // disk_full
		{"53200", store.CauseResources, true},   // out_of_memory
		{"53300", store.CauseResources, true},   // too_many_connections
		{"25006", store.CauseReadOnly, true},    // read_only_sql_transaction (a hot standby)
		{"57P01", store.CauseTerminated, true},  // admin_shutdown: pg_terminate_backend, a failover (p37 F6)
		{"57P02", store.CauseShutdown, true},    // crash_shutdown
		{"57P03", store.CauseShutdown, true},    // cannot_connect_now
		{"08006", store.CauseUnreachable, true}, // connection_failure
		{"55P03", store.CauseLocked, true},      // lock_not_available
		{"57014", store.CauseTimeout, true},     // statement timeout (not the caller's)
		{"23505", "", false},                    // unique_violation: a conflict
		{"42P01", "", false},                    // undefined_table: the gateway's fault
	} {
		t.Run(tc.code, func(t *testing.T) {
			err := mapErr(context.Background(), fmt.Errorf("exec: %w", &pgconn.PgError{Code: tc.code}))
			if got := errors.Is(err, store.ErrUnavailable); got != tc.unavailable {
				t.Errorf("mapErr(%s) unavailable = %v, want %v", tc.code, got, tc.unavailable)
			}
			if got := store.UnavailableCause(err); got != tc.cause {
				t.Errorf("mapErr(%s) cause = %q, want %q", tc.code, got, tc.cause)
			}
			var pe *pgconn.PgError
			if !errors.As(err, &pe) {
				t.Errorf("mapErr(%s) lost the server's error: %v", tc.code, err)
			}
		})
	}
}

// TestConnectErrorOnce: a server that refuses the connection is told
// once, though pgx tried twice (sslmode=prefer: TLS, then plain) and
// joined both failures (a PostgreSQL operator's review: the same line
// twice).
func TestConnectErrorOnce(t *testing.T) {
	_, err := Open(context.Background(), "postgres://kg:pw@127.0.0.1:1/kgdb?sslmode=prefer&connect_timeout=5", Options{})
	if err == nil {
		t.Fatal("Open of a closed port succeeded")
	}
	msg := err.Error()
	if n := strings.Count(msg, "connection refused"); n != 1 {
		t.Errorf("the cause told %d times, want once: %s", n, msg)
	}
	if strings.Contains(msg, "pw") && strings.Contains(msg, "kg:") {
		t.Errorf("the error names the user and password: %s", msg)
	}
}
