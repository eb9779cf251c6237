package main

import (
	"regexp"
	"strings"
	"testing"
)

// TestDBURLRefused: a --db URL whose password holds an unencoded reserved
// character is refused with exit 2 (configuration refused), saying what
// to do and printing no piece of the password (nor a host or database
// parsed from it); a refused URL setting is exit 2 naming the setting,
// never its value. Nothing is connected to.
func TestDBURLRefused(t *testing.T) {
	for _, pw := range []string{"Zq7p@Xv9s#Kw2d/Lm4r", "Ab1c#Cd2e", "Ef3g/Gh4h", "Ij5k?Kl6m", "Mn7o@Op8q/Qr9s?St0t#Uv1w", "Wx2y/Yz3a@b"} {
		db := "postgres://kguser:" + pw + "@127.0.0.1:1/kgdb"
		for _, args := range [][]string{
			{"serve", "--addr", "127.0.0.1:0", "--db", db},
			{"audit", "verify", "--db", db},
			{"import", "--kind", "assessment", "--db", db, "-"},
		} {
			out, errOut, code := cli(t, "", args...)
			if code != exitUsage || !strings.Contains(errOut, "percent-encode the password") || !strings.Contains(errOut, "PGPASSWORD") {
				t.Errorf("%s with password %q: exit %d, stderr %q; want exit 2 saying to percent-encode it", args[0], pw, code, errOut)
			}
			for _, piece := range regexp.MustCompile(`[@#/?:]`).Split(pw, -1) {
				if len(piece) >= 3 && (strings.Contains(errOut, piece) || strings.Contains(out, piece)) {
					t.Errorf("%s with password %q: output repeats %q: %q", args[0], pw, piece, errOut)
				}
			}
		}
	}
	for _, tc := range []struct{ query, setting string }{
		{"sslmode=Vq8bogus", "sslmode"},
		{"pool_max_conns=Vq8abc", "pool_max_conns"},
		{"write_lanes=0", "write_lanes"},
		{"statement_timeout=Vq8thirty", "statement_timeout"},
		{"sslmode=verify-ca&sslrootcert=/nonexistent/Vq8/ca.pem", "sslrootcert"},
	} {
		_, errOut, code := cli(t, "", "serve", "--addr", "127.0.0.1:0", "--db", "postgres://kguser@127.0.0.1:1/kgdb?"+tc.query)
		if code != exitUsage || !strings.Contains(errOut, "setting "+tc.setting+" ") || strings.Contains(errOut, "Vq8") {
			t.Errorf("serve --db ...?%s: exit %d, stderr %q; want exit 2 naming %s without its value", tc.query, code, errOut, tc.setting)
		}
	}
}
