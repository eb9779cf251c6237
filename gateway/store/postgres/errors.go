package postgres

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// mapErr wraps driver errors with the store sentinels (see the package
// documentation). An error caused by the caller's own ctx ending is
// returned unchanged: that is the caller's doing, not the database's.
func mapErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrUnavailable) {
		return err
	}
	var ce *pgconn.ConnectError
	connecting := errors.As(err, &ce)
	if connecting {
		err = &connectError{ce}
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case isConflictCode(pe.Code):
			return fmt.Errorf("%w: %w", store.ErrConflict, err)
		case pe.Code == "54000":
			// program_limit_exceeded: an index row over the B-tree's limit
			// (a 3,000-character identifier), the value the client wrote:
			// a 500 it was not (a PostgreSQL operator's review).
			return fmt.Errorf("%w: %w", store.ErrValueTooLong, err)
		case pe.Code == "57014" && ctx.Err() != nil:
			return err // cancelled by the caller's context
		case isUnavailableCode(pe.Code):
			return store.Unavailable(unavailableCause(pe.Code), err)
		case connecting && pe.Code == "55000":
			// object_not_in_prerequisite_state when connecting: "database
			// is not currently accepting connections" (ALLOW_CONNECTIONS
			// false, for a maintenance): not the gateway's fault, and over
			// once the database is opened again (a PostgreSQL operator's
			// review: it was a 500, and the circuit breaker never opened).
			return store.Unavailable(store.CauseClosed, err)
		case connecting && refusedCause(pe.Code) != "":
			// The server refused the connection itself: the login or
			// the grants are wrong (a password rotated, CONNECT
			// revoked), which is no fault of the gateway's.
			return store.Unavailable(refusedCause(pe.Code), err)
		}
		return err
	}
	if ctx.Err() != nil {
		return err
	}
	if connecting && isCertErr(err) {
		return store.Unavailable(store.CauseCertificate, err)
	}
	if isConnErr(err) {
		return store.Unavailable(store.CauseUnreachable, err)
	}
	return err
}

// connectError is a pgconn.ConnectError told without the user name its
// own text starts with ("failed to connect to `user=... database=...`"):
// errors and logs name the server's host and the database only
// (docs/deployment.md), never a password (pgconn never prints one).
type connectError struct{ ce *pgconn.ConnectError }

func (e *connectError) Error() string {
	msg := "failed to connect to database " + strconv.Quote(e.ce.Config.Database)
	if inner := errors.Unwrap(e.ce); inner != nil {
		msg += ": " + distinctCauses(inner) // host:port (host name): what failed
	}
	return msg
}

// distinctCauses is err's text, each cause once: pgx joins the failure of
// every attempt it made (sslmode=prefer tries TLS, then plain), which
// were the same line twice (a PostgreSQL operator's review).
func distinctCauses(err error) string {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return err.Error()
	}
	var seen []string
	for _, e := range j.Unwrap() {
		if e != nil && !slices.Contains(seen, e.Error()) {
			seen = append(seen, e.Error())
		}
	}
	return strings.Join(seen, "; ")
}

func (e *connectError) Unwrap() error { return e.ce }

// isConflictCode: unique_violation, serialization_failure, deadlock_detected.
func isConflictCode(code string) bool {
	return code == "23505" || code == "40001" || code == "40P01"
}

// isUnavailableCode: connection exceptions (class 08), insufficient
// resources (class 53: too many connections, out of memory or disk),
// statement timeout (57014), administrator or crash shutdown and cannot
// connect now (57P01..57P03), lock_not_available (55P03), and the
// read-only transaction of a hot standby (25006, after a failover).
func isUnavailableCode(code string) bool {
	switch {
	case strings.HasPrefix(code, "08"), strings.HasPrefix(code, "53"):
		return true
	}
	switch code {
	case "57014", "57P01", "57P02", "57P03", "55P03", "25006":
		return true
	}
	return false
}

// unavailableCause is the store.UnavailableError cause of an
// isUnavailableCode SQLSTATE, for the log and the readiness probe.
func unavailableCause(code string) string {
	switch {
	case code == "53100":
		return store.CauseFull
	case strings.HasPrefix(code, "53"):
		return store.CauseResources
	case strings.HasPrefix(code, "08"):
		return store.CauseUnreachable
	case code == "25006":
		return store.CauseReadOnly
	case code == "57014":
		return store.CauseTimeout
	case code == "55P03":
		return store.CauseLocked
	case code == "57P01":
		// admin_shutdown ends this session only, as often as the whole
		// server: pg_terminate_backend, failover tooling, a fast
		// shutdown. "Shutting down" read as the gateway's own (p37 F6).
		return store.CauseTerminated
	case strings.HasPrefix(code, "57P"):
		return store.CauseShutdown
	}
	return store.CauseUnreachable
}

// refusedCause is the store.UnavailableError cause of a server's refusal
// of a new connection, "" for other codes: invalid authorization
// specification (class 28: a wrong password, no such role, pg_hba.conf),
// insufficient privilege (42501: no CONNECT on the database) and
// invalid catalog name (3D000: no such database).
func refusedCause(code string) string {
	switch {
	case strings.HasPrefix(code, "28"):
		return store.CauseLogin
	case code == "42501":
		return store.CausePermission
	case code == "3D000":
		return store.CauseNoDatabase
	}
	return ""
}

// isCertErr tells whether err is the server's TLS certificate failing
// verification (sslmode=verify-ca or verify-full): an unknown CA, a host
// name it does not name, an expired certificate.
func isCertErr(err error) bool {
	var ve *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	return errors.As(err, &ve) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci)
}

// isConnErr tells whether err is a failure to reach the server or a lost
// connection (not an error the server reported).
func isConnErr(err error) bool {
	var ce *pgconn.ConnectError
	var ne net.Error
	switch {
	case errors.As(err, &ce), errors.As(err, &ne),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return true
	}
	// A statement sent on a connection that pgx had already found broken
	// ("conn closed"), or that failed before anything reached the server.
	return pgconn.SafeToRetry(err) || strings.Contains(err.Error(), "conn closed")
}

// lostConn tells whether err means that the connection was closed or
// broken (rather than the server refusing the statement or being
// overloaded): then another connection may well succeed.
func lostConn(ctx context.Context, err error) bool {
	if ctx.Err() != nil || errors.Is(err, errNoAnswer) {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02"
	}
	var ce *pgconn.ConnectError
	return !errors.As(err, &ce) && isConnErr(err)
}

// text makes s storable in a PostgreSQL text value: NUL bytes and invalid
// UTF-8 become U+FFFD (the same on write and in queries, so values still
// match).
func text(s string) string {
	if strings.IndexByte(s, 0) < 0 && utf8.ValidString(s) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}
