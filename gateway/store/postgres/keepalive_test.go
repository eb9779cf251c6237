package postgres

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestTimeoutSettings: the URL's lock_timeout and libpq's keepalive
// settings are the gateway's, not server settings sent at the login
// (which PostgreSQL would refuse as unknown parameters); a value they
// cannot take is store.ErrInvalidSettings.
func TestTimeoutSettings(t *testing.T) {
	const base = "postgres://u@127.0.0.1:5432/db?"
	for _, tc := range []struct {
		name, query string
		want        keepalive
		invalid     bool
		hint        string // in an invalid setting's message
	}{
		{"defaults", "", keepalive{on: true, idle: DefaultKeepaliveIdle, every: DefaultKeepaliveInterval, count: DefaultKeepaliveCount, userTimeout: DefaultTCPUserTimeout}, false, ""},
		{"set", "keepalives_idle=30&keepalives_interval=2&keepalives_count=4&tcp_user_timeout=10000&lock_timeout=2s",
			keepalive{on: true, idle: 30 * time.Second, every: 2 * time.Second, count: 4, userTimeout: 10 * time.Second}, false, ""},
		{"off", "keepalives=0&tcp_user_timeout=0", keepalive{idle: DefaultKeepaliveIdle, every: DefaultKeepaliveInterval, count: DefaultKeepaliveCount}, false, ""},
		{"bad idle", "keepalives_idle=soon", keepalive{}, true, "seconds"},
		{"bad count", "keepalives_count=0", keepalive{}, true, "number of probes, at least 1"},
		{"bad user timeout", "tcp_user_timeout=30s", keepalive{}, true, "milliseconds"},
		{"bad keepalives", "keepalives=yes", keepalive{}, true, ""},
		{"bad lock_timeout", "lock_timeout=forever", keepalive{}, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _, _, err := config(base+tc.query, Options{})
			if tc.invalid {
				if !errors.Is(err, store.ErrInvalidSettings) || !strings.Contains(err.Error(), tc.hint) {
					t.Errorf("config(%q) = %v, want ErrInvalidSettings saying %q", tc.query, err, tc.hint)
				}
				return
			}
			if err != nil {
				t.Fatalf("config(%q) = %v", tc.query, err)
			}
			for _, k := range []string{"keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout", "lock_timeout"} {
				if v, ok := cfg.ConnConfig.RuntimeParams[k]; ok {
					t.Errorf("config(%q) sends %s=%s to the server", tc.query, k, v)
				}
			}
			q, err := url.ParseQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			params := map[string]string{}
			for k := range q {
				params[k] = q.Get(k)
			}
			got, err := keepaliveSettings(params)
			if err != nil || got != tc.want {
				t.Errorf("keepaliveSettings(%q) = %+v, %v, want %+v", tc.query, got, err, tc.want)
			}
		})
	}
}
