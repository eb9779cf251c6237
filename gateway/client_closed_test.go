package gateway_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/console"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// TestClientClosedRequest: a request whose client went away before the
// answer (its context canceled: a probe's timeout, an impatient client)
// is no fault of the gateway's. It is answered (to nobody) and logged as
// nginx does, status 499, at INFO, never as an ERROR 500 (p32: every
// `curl --max-time 0.05` left an ERROR "request failed" 500 line, and an
// ERROR "console request failed" on the console).
func TestClientClosedRequest(t *testing.T) {
	for _, path := range []string{"/fhir/Observation?code=8867-4", "/admin/deliveries?status=dead", "/console/deliveries"} {
		t.Run(path, func(t *testing.T) {
			st := tempSQLite(t, sqlite.Options{})
			var logs syncBuf
			logger := slog.New(slog.NewJSONHandler(&logs, nil))
			s := gateway.NewTestServer(t, app.Config{Store: st}, gateway.Config{RateLimit: -1, Logger: logger},
				func(a *app.App) (*console.Console, error) { return console.New(console.Config{App: a, Logger: logger}) })
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // the client is gone before the gateway looks
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil).WithContext(ctx))
			if rec.Code != gateway.StatusClientClosed {
				t.Errorf("GET %s, client gone = %d, want %d", path, rec.Code, gateway.StatusClientClosed)
			}
			lines := 0
			for line := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
				var l map[string]any
				if json.Unmarshal([]byte(line), &l) != nil {
					continue
				}
				if l["level"] == "ERROR" || l["level"] == "WARN" {
					t.Errorf("a client gone logged %v, want no ERROR or WARN", l)
				}
				if l["msg"] == "request" {
					lines++
					if l["status"] != float64(gateway.StatusClientClosed) || l["level"] != "INFO" {
						t.Errorf("request line = %v, want INFO with status 499", l)
					}
				}
			}
			if lines != 1 {
				t.Errorf("%d request lines, want 1:\n%s", lines, logs.String())
			}
		})
	}
}
