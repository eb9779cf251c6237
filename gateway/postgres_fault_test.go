package gateway_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/internal/blackhole"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/postgres"
)

// faultHangGuard bounds one request that must be answered by itself
// (within the store's configured timeouts): no performance assertion,
// only what tells a hang from an answer.
const faultHangGuard = 60 * time.Second

// pgSchema creates an empty schema on GATEWAY_TEST_POSTGRES_URL's
// database (dropped at the end) and returns the URL selecting it, or
// skips the test.
func pgSchema(t *testing.T, name string) string {
	t.Helper()
	base := os.Getenv("GATEWAY_TEST_POSTGRES_URL")
	if base == "" {
		t.Skip("GATEWAY_TEST_POSTGRES_URL not set")
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{"DROP SCHEMA IF EXISTS " + name + " CASCADE", "CREATE SCHEMA " + name} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if c, err := pgx.Connect(ctx, base); err == nil {
			_, _ = c.Exec(ctx, "DROP SCHEMA IF EXISTS "+name+" CASCADE")
			c.Close(ctx)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return u.String()
}

// guarded serves one request, failing the test if it is not answered
// within faultHangGuard.
func guarded(t *testing.T, h http.Handler, method, target, body string) *httptest.ResponseRecorder {
	t.Helper()
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() { done <- req(h, method, target, body) }()
	select {
	case rec := <-done:
		return rec
	case <-time.After(faultHangGuard):
		t.Fatalf("%s %s: no answer within %v", method, target, faultHangGuard)
		return nil
	}
}

// isRule tells whether rec is an OperationOutcome of rule.
func isRule(rec *httptest.ResponseRecorder, rule string) bool {
	b := rec.Body.String()
	return strings.Contains(b, `"resourceType":"OperationOutcome"`) && strings.Contains(b, `"`+rule+`"`)
}

// TestPostgresVanishedHost: the database host vanishes without a TCP
// reset (a proxy that holds every connection and forwards nothing).
// Requests are answered 503 store-unavailable with Retry-After (an
// OperationOutcome) instead of waiting; once the store's circuit breaker
// opens, /readyz says "circuit-open"; when the host is back, the gateway
// serves again by itself.
func TestPostgresVanishedHost(t *testing.T) {
	u := pgSchema(t, "kgt_gw_vanished")
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := blackhole.Start(pu.Host)
	if err != nil {
		t.Fatal(err)
	}
	pu.Host = proxy.Addr()
	st, err := postgres.Open(context.Background(), pu.String(), postgres.Options{
		MaxConns: 6, ConnectTimeout: time.Second, StatementTimeout: time.Second, AcquireTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	h := newServer(t, app.Config{Store: st}, gateway.Config{})
	t.Cleanup(func() { st.Close() })
	t.Cleanup(func() { proxy.Close() }) // first: a store hanging on it is freed
	if rec := guarded(t, h, "POST", "/fhir/Patient", patientJSON); rec.Code != http.StatusCreated {
		t.Fatalf("create before the host vanished = %d %s", rec.Code, rec.Body)
	}

	proxy.Blackhole()
	opened := false
	for i := 0; i < 30 && !opened; i++ {
		for _, r := range []struct{ method, target, body string }{
			{"GET", "/fhir/Patient?family=Testpatient", ""},
			{"POST", "/fhir/Patient", patientJSON},
		} {
			rec := guarded(t, h, r.method, r.target, r.body)
			if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" || !isRule(rec, "store-unavailable") {
				t.Fatalf("%s %s with the host vanished = %d (Retry-After %q) %s, want 503 store-unavailable with Retry-After",
					r.method, r.target, rec.Code, rec.Header().Get("Retry-After"), rec.Body)
			}
		}
		rec := guarded(t, h, "GET", "/readyz", "")
		if rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("/readyz with the host vanished = %d %s, want 503", rec.Code, rec.Body)
		}
		opened = strings.Contains(rec.Body.String(), `"circuit-open"`)
	}
	if !opened {
		t.Fatal(`/readyz never said "circuit-open" while the host was gone`)
	}

	proxy.Forward()
	deadline := time.Now().Add(faultHangGuard)
	for guarded(t, h, "GET", "/readyz", "").Code != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatalf("not ready within %v of the host's return", faultHangGuard)
		}
		time.Sleep(100 * time.Millisecond) // the store's probe reconnects in the background
	}
	if rec := guarded(t, h, "GET", "/fhir/Patient?family=Testpatient", ""); rec.Code != http.StatusOK {
		t.Errorf("search after the host came back = %d %s", rec.Code, rec.Body)
	}
}

// TestPostgresLockedSearch: a search that waits on a lock another
// session holds (LOCK TABLE ... IN ACCESS EXCLUSIVE MODE) is answered
// 503 store-busy with Retry-After once the lock timeout passes, not
// search-too-costly when the search timeout does; the statement timeout
// is longer than the hang guard, so only the lock timeout ends the wait.
func TestPostgresLockedSearch(t *testing.T) {
	u := pgSchema(t, "kgt_gw_locked")
	st, err := postgres.Open(context.Background(), u, postgres.Options{LockTimeout: 300 * time.Millisecond, StatementTimeout: 2 * faultHangGuard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h := newServer(t, app.Config{Store: st, SearchTimeout: 2 * faultHangGuard}, gateway.Config{})
	if rec := guarded(t, h, "POST", "/fhir/Patient", patientJSON); rec.Code != http.StatusCreated {
		t.Fatalf("create = %d %s", rec.Code, rec.Body)
	}
	ctx := context.Background()
	holder, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(ctx)
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `LOCK TABLE idx_string IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	rec := guarded(t, h, "GET", "/fhir/Patient?family=Testpatient", "")
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" || !isRule(rec, "store-busy") {
		t.Errorf("search behind a lock = %d (Retry-After %q) %s, want 503 store-busy with Retry-After",
			rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if rec := guarded(t, h, "GET", "/fhir/Patient?family=Testpatient", ""); rec.Code != http.StatusOK {
		t.Errorf("search after the lock = %d %s", rec.Code, rec.Body)
	}
}

// TestPostgresValueTooLong: a resource whose searchable value is too long
// for PostgreSQL's B-tree index entries (a 3,000-character identifier, a
// 9,000-character name) is refused 422 value-too-long-to-index, nothing
// written, where it answered 500 (a PostgreSQL operator's review); the
// same resource with a short value is stored.
func TestPostgresValueTooLong(t *testing.T) {
	st, err := postgres.Open(context.Background(), pgSchema(t, "kgt_gw_toolong"), postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h := newServer(t, app.Config{Store: st}, gateway.Config{})
	// Letters that do not compress (PostgreSQL compresses long index
	// entries: a run of one letter fits).
	letters := func(n int) string {
		b := make([]byte, n)
		x := uint32(2463534242)
		for i := range b {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			b[i] = 'a' + byte(x%26)
		}
		return string(b)
	}
	for param, body := range map[string]string{
		"identifier": `{"resourceType":"Patient","identifier":[{"system":"urn:x:long","value":"` + letters(3000) + `"}]}`,
		"family":     `{"resourceType":"Patient","name":[{"family":"` + letters(9000) + `"}]}`,
	} {
		rec := guarded(t, h, "POST", "/fhir/Patient", body)
		assertIssue(t, rec, http.StatusUnprocessableEntity, "value-too-long-to-index", "Patient")
		if !strings.Contains(rec.Body.String(), "search parameter "+param+" of this Patient") {
			t.Errorf("POST of a long %s = %s, want the parameter named", param, rec.Body)
		}
	}
	// In a Bundle, the entry is named (a PostgreSQL operator's review: the
	// 422 named neither entry nor element); a transaction writes nothing,
	// a batch's other entries are written.
	entry := func(value string) string {
		return `{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},` +
			`"identifier":[{"system":"urn:x:long","value":"` + value + `"}]},"request":{"method":"POST","url":"Observation"}}`
	}
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[` + entry("short") + `,` + entry(letters(3500)) + `]}`
	rec := guarded(t, h, "POST", "/fhir", tx)
	assertIssue(t, rec, http.StatusUnprocessableEntity, "value-too-long-to-index", "Bundle.entry[1].resource")
	if n := decode(t, req(h, "GET", "/fhir/Observation?_summary=count", ""))["total"].(float64); n != 0 {
		t.Errorf("%v Observations stored by the refused transaction, want none", n)
	}
	batch := strings.Replace(tx, `"transaction"`, `"batch"`, 1)
	if status, rule, expr := batchEntryOutcome(t, guarded(t, h, "POST", "/fhir", batch), 1); !strings.HasPrefix(status, "422") ||
		rule != "value-too-long-to-index" || expr != "Bundle.entry[1].resource" {
		t.Errorf("batch entry 1 = %s %s %s, want 422 value-too-long-to-index at Bundle.entry[1].resource", status, rule, expr)
	}
	if n := decode(t, req(h, "GET", "/fhir/Observation?_summary=count", ""))["total"].(float64); n != 1 {
		t.Errorf("%v Observations stored by the batch, want its first entry's", n)
	}
	if n := decode(t, req(h, "GET", "/fhir/Patient?_summary=count", ""))["total"].(float64); n != 0 {
		t.Errorf("%v Patients stored, want none", n)
	}
	if rec := req(h, "POST", "/fhir/Patient", `{"resourceType":"Patient","identifier":[{"system":"urn:x:long","value":"short"}]}`); rec.Code != http.StatusCreated {
		t.Errorf("a short identifier = %d %s", rec.Code, rec.Body)
	}
}
