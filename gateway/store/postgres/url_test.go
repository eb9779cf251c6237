package postgres

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// ambiguousPasswords are passwords with reserved characters left
// unencoded in a URL's user information, in several shapes; their pieces
// between the reserved characters are distinct, so that any echo of
// them (a host, a port or a database parsed from the URL) is found.
var ambiguousPasswords = []string{
	"Zq7p@Xv9s#Kw2d/Lm4r", // the probe's shape: p@ss#w/rd
	"Ab1c#Cd2e",
	"Ef3g/Gh4h",
	"Ij5k?Kl6m",
	"Mn7o@Op8q/Qr9s?St0t#Uv1w",
	"Wx2y/Yz3a@b",
	"Ca4b#Cc5d@127.0.0.1:5432/x",
}

// passwordPieces are the pieces of password between reserved characters.
func passwordPieces(password string) []string {
	var out []string
	for _, p := range regexp.MustCompile(`[@#/?:.]`).Split(password, -1) {
		if len(p) >= 3 {
			out = append(out, p)
		}
	}
	return out
}

// TestAmbiguousURLRefused: a URL whose password holds an unencoded
// reserved character is refused as invalid settings before anything is
// parsed from it or a connection tried, and neither Open's error nor
// Describe repeats any piece of the password; the same password
// percent-encoded is taken.
func TestAmbiguousURLRefused(t *testing.T) {
	for _, pw := range ambiguousPasswords {
		for _, tmpl := range []string{
			"postgres://kguser:%s@127.0.0.1:5432/kgdb",
			"postgresql://kguser:%s@db.internal/kgdb?sslmode=verify-full",
			"postgres://kguser:%s@127.0.0.1:1",
		} {
			raw := strings.Replace(tmpl, "%s", pw, 1)
			t.Run(raw, func(t *testing.T) {
				_, err := Open(context.Background(), raw, Options{})
				if !errors.Is(err, store.ErrInvalidSettings) || errors.Is(err, store.ErrUnavailable) {
					t.Fatalf("Open = %v, want ErrInvalidSettings", err)
				}
				for _, text := range []string{err.Error(), Describe(raw), store.ErrorClass(err)} {
					for _, piece := range passwordPieces(pw) {
						if strings.Contains(text, piece) {
							t.Errorf("%q repeats %q of the password", text, piece)
						}
					}
				}
				if !strings.Contains(err.Error(), "percent-encode the password") || !strings.Contains(err.Error(), "PGPASSWORD") {
					t.Errorf("Open = %v, want it to say what to do", err)
				}
			})
		}
	}
	// Percent-encoded, the same password is a password: the server is
	// then merely unreachable.
	raw := "postgres://kguser:Zq7p%40Xv9s%23Kw2d%2FLm4r@127.0.0.1:1/kgdb?connect_timeout=2"
	if _, err := Open(context.Background(), raw, Options{}); !errors.Is(err, store.ErrUnavailable) || strings.Contains(err.Error(), "Zq7p") {
		t.Errorf("Open of an encoded password = %v, want ErrUnavailable (unreachable) without the password", err)
	}
	if got := Describe(raw); got != "postgres://127.0.0.1:1/kgdb" {
		t.Errorf("Describe(encoded) = %q", got)
	}
}

// TestInvalidSettingRefused: a setting of the URL that is refused is
// store.ErrInvalidSettings naming the setting (its key, never its value)
// before any connection is tried.
func TestInvalidSettingRefused(t *testing.T) {
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("Vq8secretvalue"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ query, setting string }{
		{"sslmode=Vq8bogus", "sslmode"},
		{"pool_max_conns=Vq8abc", "pool_max_conns"},
		{"pool_max_conn_lifetime=Vq8x", "pool_max_conn_lifetime"},
		{"write_lanes=0", "write_lanes"},
		{"write_queue=Vq8", "write_queue"},
		{"statement_timeout=Vq8thirty", "statement_timeout"},
		{"pool_acquire_timeout=Vq8", "pool_acquire_timeout"},
		{"connect_timeout=Vq8", "connect_timeout"},
		{"target_session_attrs=Vq8", "target_session_attrs"},
		{"sslmode=verify-ca&sslrootcert=/nonexistent/Vq8/ca.pem", "sslrootcert"},
		{"sslmode=verify-ca&sslrootcert=" + notPEM, "sslrootcert"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			_, err := Open(context.Background(), "postgres://kguser:Vq8pw@127.0.0.1:1/kgdb?"+tc.query, Options{})
			if !errors.Is(err, store.ErrInvalidSettings) || errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("Open = %v, want ErrInvalidSettings", err)
			}
			if !strings.Contains(err.Error(), "setting "+tc.setting+" ") {
				t.Errorf("Open = %v, want it to name %s", err, tc.setting)
			}
			if strings.Contains(err.Error(), "Vq8") || strings.Contains(err.Error(), "kguser") {
				t.Errorf("Open = %v: it repeats a value of the URL", err)
			}
		})
	}
}
