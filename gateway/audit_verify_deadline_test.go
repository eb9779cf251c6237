package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// deadlineRecorder records the deadlines a handler sets on its
// connection through http.ResponseController.
type deadlineRecorder struct {
	*httptest.ResponseRecorder
	write []time.Time
}

func (d *deadlineRecorder) SetWriteDeadline(t time.Time) error {
	d.write = append(d.write, t)
	return nil
}

// TestVerifyLiftsDeadlines: GET /admin/audit/verify walks the whole chain
// (about 1 ms an AuditEvent), so it lifts the server's write deadline for
// its own request: the answer of a long trail is not cut off by serve's
// 120 s write timeout (p32 F4: the API form would pass it near 110,000
// AuditEvents). A client that gives up still stops the walk (its context
// ends).
func TestVerifyLiftsDeadlines(t *testing.T) {
	st := tempSQLite(t, sqlite.Options{})
	s := newServer(t, app.Config{Store: st}, gateway.Config{})
	rec := &deadlineRecorder{ResponseRecorder: httptest.NewRecorder()}
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/admin/audit/verify", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("verify = %d %s", rec.Code, rec.Body)
	}
	if len(rec.write) != 1 || !rec.write[0].IsZero() {
		t.Errorf("write deadlines set: %v; want it lifted once (the zero time)", rec.write)
	}
}
