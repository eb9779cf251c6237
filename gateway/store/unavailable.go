package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// LogLevel is the level at which a background task logs err: WARN when
// the database is unavailable (locked by another process, disk full: the
// database's trouble, which /readyz names, and which passes) or a
// concurrent writer won (ErrConflict: a deadlock PostgreSQL broke between
// replicas; the task tries again at its next poll: a PostgreSQL operator's
// review was paged for it at ERROR), ERROR otherwise.
func LogLevel(err error) slog.Level {
	if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrConflict) {
		return slog.LevelWarn
	}
	return slog.LevelError
}

// FailureCause is what a background task's log line says of err: the
// database's trouble (UnavailableCause), "conflict" for a concurrent
// writer that won, "" otherwise (the error class says the rest).
func FailureCause(err error) string {
	if c := UnavailableCause(err); c != "" {
		return c
	}
	if errors.Is(err, ErrConflict) {
		return "conflict"
	}
	return ""
}

// FailureRun follows a background loop's failures of one kind (its
// claims of work, polled every second or so), so that a database outage
// is logged once, not at every poll: the first failure of a run of
// failures with the same cause (or, not the database's, the same
// ErrorClass) at LogLevel, the next ones at
// DEBUG, and the end of the run once. Its zero value is a run of none;
// one goroutine uses it.
type FailureRun struct {
	n   int    // failures in a row
	key string // their cause, or class
}

// Failed counts err and returns the level to log it at, and how many
// failures in a row there have been, err included.
func (r *FailureRun) Failed(err error) (slog.Level, int) {
	key := UnavailableCause(err)
	if key == "" {
		key = "class " + ErrorClass(err) // not the database's trouble
	}
	if r.n > 0 && key == r.key {
		r.n++
		return slog.LevelDebug, r.n
	}
	r.n, r.key = 1, key
	return LogLevel(err), 1
}

// Succeeded ends the run and returns how many failures it had (0: none,
// nothing to log).
func (r *FailureRun) Succeeded() int {
	n := r.n
	r.n, r.key = 0, ""
	return n
}

// Causes of an UnavailableError: what kind of trouble the database is in,
// as the log and the readiness probe name it. They carry no data.
const (
	CauseLocked      = "locked"           // another process holds the write lock (SQLite), a lock not available
	CauseFull        = "disk full"        // no space for the database or its journal
	CauseReadOnly    = "read-only"        // the database (file, a hot standby) takes no writes
	CauseIO          = "I/O error"        // the disk failed a read or a write
	CauseCantOpen    = "cannot open"      // a file of the database cannot be opened
	CauseResources   = "out of resources" // the server's memory or connections ran out
	CauseUnreachable = "unreachable"      // the server cannot be reached, or the connection broke
	CauseShutdown    = "shutting down"    // the server is shutting down or starting
	// CauseTerminated: the server ended the gateway's session (PostgreSQL's
	// 57P01 admin_shutdown: pg_terminate_backend, failover tooling, a
	// server's fast shutdown), not the gateway shutting down: look at the
	// database server's log for who ended it. The pool connects anew.
	CauseTerminated = "connection terminated by the database server"
	CauseTimeout    = "statement timeout"
	CauseNoConn     = "no free connection" // every pooled connection stayed busy for the acquire timeout
	// CauseCircuitOpen: connection attempts failed or timed out
	// repeatedly (a host that vanished), so the store refuses calls at
	// once until a probe connection succeeds (PostgreSQL).
	CauseCircuitOpen = "circuit open"
	// The server refused the gateway's connection: its configured login
	// or the server's grants are wrong, not the gateway.
	CauseLogin       = "login rejected"      // a wrong password, no such role, pg_hba.conf refused it
	CausePermission  = "permission denied"   // the role may not connect to the database (CONNECT revoked)
	CauseNoDatabase  = "no such database"    // the database named in the URL does not exist
	CauseCertificate = "certificate refused" // the server's TLS certificate failed verification (sslrootcert, host name)
	// CauseClosed: the database takes no connections now (PostgreSQL's
	// ALTER DATABASE ... ALLOW_CONNECTIONS false, a step of a restore or
	// an upgrade): an administrator's doing that ends with the maintenance.
	CauseClosed = "database closed to connections"
	// CauseQueueFull is not the database's trouble but the gateway's
	// back-pressure: its write queue is full (ErrBusy). The database may
	// be healthy; the replica has more writes than it takes.
	CauseQueueFull = "write queue full"
)

// LoginRefused tells whether cause is one of the server's refusals of the
// gateway's connection (CauseLogin, CausePermission, CauseNoDatabase,
// CauseCertificate): a person must change the login, the grants, the
// URL or the certificates; waiting alone does not mend it.
func LoginRefused(cause string) bool {
	switch cause {
	case CauseLogin, CausePermission, CauseNoDatabase, CauseCertificate:
		return true
	}
	return false
}

// UnavailableError is an ErrUnavailable (errors.Is) that says why: Cause,
// one of the Cause constants, which the log may name (it holds no data),
// and the driver's error, whose text the log does not repeat.
type UnavailableError struct {
	Cause string
	Err   error
}

func (e *UnavailableError) Error() string {
	return ErrUnavailable.Error() + " (" + e.Cause + "): " + e.Err.Error()
}

// Is makes an UnavailableError an ErrUnavailable.
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }

func (e *UnavailableError) Unwrap() error { return e.Err }

// Unavailable wraps err, a driver's error, as an UnavailableError of cause.
func Unavailable(cause string, err error) error { return &UnavailableError{Cause: cause, Err: err} }

// UnavailableCause is the Cause of the UnavailableError err wraps, "" when
// it wraps none.
func UnavailableCause(err error) string {
	var ue *UnavailableError
	if errors.As(err, &ue) {
		return ue.Cause
	}
	return ""
}

// ErrorClass describes an error without its text: the sentinel errors it
// wraps, the cause of a database unavailable (UnavailableCause) and
// the Go types along its chain (types carry no values).
func ErrorClass(err error) string {
	var parts []string
	for _, sentinel := range []error{ErrUnavailable, ErrInvalidSettings, ErrConflict, ErrNotFound, ErrGone,
		ErrCorruptBody, context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, sentinel) {
			parts = append(parts, sentinel.Error())
		}
	}
	if cause := UnavailableCause(err); cause != "" {
		// What the database's trouble is (a full disk, a lock held by
		// another process): a fixed word of the store's, no data.
		parts = append(parts, "cause: "+cause)
	}
	var types []string
	for e := err; e != nil && len(types) < 8; e = errors.Unwrap(e) {
		types = append(types, fmt.Sprintf("%T", e))
	}
	parts = append(parts, strings.Join(types, " > "))
	return strings.Join(parts, "; ")
}

// auditWriteKey marks a context as the audit trail's write (WithAuditWrite).
type auditWriteKey struct{}

// WithAuditWrite marks ctx as that of the audit trail's write: the one
// write transaction the audit log has running at a time, holding the
// AuditEvents of every request waiting for one. A Write with it is not
// refused with ErrBusy when the write queue is full: it waits in the
// queue like the others (a slot reserved for it), so that a request
// refused for back-pressure still leaves its AuditEvent. Only the audit
// log may use it, one write at a time, or the queue's bound means
// nothing.
func WithAuditWrite(ctx context.Context) context.Context {
	return context.WithValue(ctx, auditWriteKey{}, true)
}

// AuditWrite reports whether ctx is the audit trail's write (WithAuditWrite).
func AuditWrite(ctx context.Context) bool {
	v, _ := ctx.Value(auditWriteKey{}).(bool)
	return v
}
