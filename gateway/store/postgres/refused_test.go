package postgres

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestLoginRefusedIsUnavailable: a server refusing the gateway's
// connection (a wrong password, no such database, a certificate that
// fails verification) is store.ErrUnavailable with the cause that names
// it, for Open as for a running store.
func TestLoginRefusedIsUnavailable(t *testing.T) {
	base, err := url.Parse(testURL(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		edit  func(u *url.URL)
		cause string
	}{
		{"wrong password", func(u *url.URL) { u.User = url.UserPassword(u.User.Username(), "kg_pgconn_wrong") }, store.CauseLogin},
		{"no such role", func(u *url.URL) { u.User = url.UserPassword("kg_pgconn_nobody", "x") }, store.CauseLogin},
		{"no such database", func(u *url.URL) { u.Path = "/kg_pgconn_nonexistent" }, store.CauseNoDatabase},
		{"certificate", func(u *url.URL) {
			q := u.Query()
			q.Set("sslmode", "verify-full")
			q.Set("sslrootcert", "system")
			u.RawQuery = q.Encode()
		}, store.CauseCertificate},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := *base
			tc.edit(&u)
			s, err := Open(context.Background(), u.String(), Options{})
			if err == nil {
				s.Close()
				t.Skipf("the test server took the connection (it checks no %s)", tc.name)
			}
			if tc.cause == store.CauseCertificate && strings.Contains(err.Error(), "refused TLS") {
				t.Skip("the test server has no TLS")
			}
			if !errors.Is(err, store.ErrUnavailable) || store.UnavailableCause(err) != tc.cause {
				t.Errorf("Open = %v (cause %q), want ErrUnavailable of cause %q", err, store.UnavailableCause(err), tc.cause)
			}
			if class := store.ErrorClass(err); !strings.Contains(class, "cause: "+tc.cause) {
				t.Errorf("ErrorClass = %q, want the cause", class)
			}
		})
	}
}

// TestConnectRevokedWhileServing: CONNECT on the database revoked while
// a store serves it (and its connections ended): its calls fail with
// ErrUnavailable of cause "permission denied", not as the gateway's
// fault, and it serves again once the grant is back.
func TestConnectRevokedWhileServing(t *testing.T) {
	s, u := openFresh(t, Options{})
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	if pu.Query().Get("search_path") != "" {
		t.Skip("the test role may not create databases: no database of its own to revoke CONNECT on")
	}
	name := strings.TrimPrefix(pu.Path, "/")
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, testURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	grant := func() {
		if _, err := admin.Exec(ctx, "GRANT CONNECT ON DATABASE "+name+" TO PUBLIC"); err != nil {
			t.Errorf("grant: %v", err)
		}
	}
	if _, err := admin.Exec(ctx, "REVOKE CONNECT ON DATABASE "+name+" FROM PUBLIC, CURRENT_USER"); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), "GRANT CONNECT ON DATABASE "+name+" TO PUBLIC, CURRENT_USER")
	})
	if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name); err != nil {
		t.Fatalf("terminate: %v", err)
	}
	// The first call may meet a connection the server ended (cause
	// unreachable or shutting down); the pool then connects anew.
	var cause string
	for range 5 {
		_, err = s.Read(ctx, "Patient", "x")
		if !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("Read with CONNECT revoked = %v, want ErrUnavailable", err)
		}
		if cause = store.UnavailableCause(err); cause == store.CausePermission {
			break
		}
	}
	if cause != store.CausePermission {
		t.Errorf("Read with CONNECT revoked: cause %q, want %q", cause, store.CausePermission)
	}
	if _, err := admin.Exec(ctx, "GRANT CONNECT ON DATABASE "+name+" TO CURRENT_USER"); err != nil {
		t.Fatalf("grant: %v", err)
	}
	if _, err := s.Read(ctx, "Patient", "x"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Read after the grant = %v, want ErrNotFound", err)
	}
	grant()
}

// TestClosedDatabaseIsUnavailable: a database closed to connections for a
// maintenance (ALTER DATABASE ... ALLOW_CONNECTIONS false: SQLSTATE 55000
// when connecting) is ErrUnavailable of cause "database closed to
// connections", for Open as for a running store whose connections were
// ended, not an error of the gateway's (a PostgreSQL operator's review:
// requests were 500s, the circuit breaker never opened); it serves again
// once the database is opened.
func TestClosedDatabaseIsUnavailable(t *testing.T) {
	s, u := openFresh(t, Options{})
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	if pu.Query().Get("search_path") != "" {
		t.Skip("the test role may not create databases: a database of its own is needed to close it")
	}
	name := strings.TrimPrefix(pu.Path, "/")
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, testURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	exec := func(q string) {
		t.Helper()
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec("ALTER DATABASE " + name + " ALLOW_CONNECTIONS false")
	t.Cleanup(func() { _, _ = admin.Exec(ctx, "ALTER DATABASE "+name+" ALLOW_CONNECTIONS true") })
	exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" + name + "' AND pid <> pg_backend_pid()")

	_, err = Open(ctx, u, Options{})
	if !errors.Is(err, store.ErrUnavailable) || store.UnavailableCause(err) != store.CauseClosed {
		t.Errorf("Open = %v (cause %q), want ErrUnavailable of cause %q", err, store.UnavailableCause(err), store.CauseClosed)
	}
	_, err = s.Read(ctx, "Patient", "p1")
	if !errors.Is(err, store.ErrUnavailable) || store.UnavailableCause(err) != store.CauseClosed {
		t.Errorf("Read while closed = %v (cause %q), want ErrUnavailable of cause %q", err, store.UnavailableCause(err), store.CauseClosed)
	}
	exec("ALTER DATABASE " + name + " ALLOW_CONNECTIONS true")
	if _, err := s.Read(ctx, "Patient", "p1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Read once opened = %v, want not found", err)
	}
}
