package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// failingWrites is a store whose writes fail with ErrUnavailable (err
// when set) while fail is set (a database that stopped taking writes);
// reads go on.
type failingWrites struct {
	store.Store
	fail atomic.Bool
	err  error
}

func (f *failingWrites) Write(ctx context.Context, fn func(store.Tx) error) error {
	if f.fail.Load() {
		if f.err != nil {
			return f.err
		}
		return store.ErrUnavailable
	}
	return f.Store.Write(ctx, fn)
}

// TestDiskFullLogged: a write refused for a full disk (the store's
// UnavailableError, as SQLite's SQLITE_FULL maps to) is answered 503 with
// Retry-After, and its request line names the cause
// without the driver's text; a read whose AuditEvent cannot be written
// for it logs "audit write failed" with the cause, and its request line
// carries the rule and the size of the answer sent.
func TestDiskFullLogged(t *testing.T) {
	st := tempSQLite(t, sqlite.Options{})
	fw := &failingWrites{Store: st, err: fmt.Errorf("sqlite: commit: %w",
		store.Unavailable(store.CauseFull, errors.New("database or disk is full (13) secret-text")))}
	var logs syncBuf
	s := newServer(t, app.Config{Store: fw}, gateway.Config{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	fw.fail.Store(true)
	rec := do(s, http.MethodPost, "/fhir/Patient", gateway.ContentTypeFHIR, []byte(`{"resourceType":"Patient"}`))
	// Its failure's AuditEvent cannot be written either: audit-unavailable.
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" ||
		!strings.Contains(rec.Body.String(), `"transient"`) {
		t.Errorf("create on a full disk = %d (Retry-After %q) %s, want 503 transient", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	read := do(s, http.MethodGet, "/fhir/Patient?_count=1", "", nil)
	if read.Code != http.StatusServiceUnavailable || !strings.Contains(read.Body.String(), "audit-unavailable") {
		t.Errorf("search on a full disk = %d %s, want 503 audit-unavailable", read.Code, read.Body)
	}
	var lines []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) == nil {
			lines = append(lines, l)
		}
	}
	if strings.Contains(logs.String(), "secret-text") {
		t.Errorf("the log repeats the driver's text: %s", logs.String())
	}
	var sawWrite, sawAudit, sawRead bool
	for _, l := range lines {
		class, _ := l["error_class"].(string)
		switch {
		case l["msg"] == "request" && l["method"] == "POST":
			sawWrite = true
			if !strings.Contains(class, "disk full") || l["level"] != "WARN" {
				t.Errorf("the refused write's line = %v, want WARN with an error_class naming the disk full", l)
			}
		case l["msg"] == "audit write failed":
			sawAudit = true
			if !strings.Contains(class, "disk full") {
				t.Errorf("audit write failed = %v, want an error_class naming the disk full", l)
			}
		case l["msg"] == "request" && l["method"] == "GET":
			sawRead = true
			if !strings.Contains(class, "disk full") || l["rules"] != "audit-unavailable" || l["bytes"] != float64(read.Body.Len()) {
				t.Errorf("the refused read's line = %v, want error_class naming the disk full, rules audit-unavailable, bytes %d", l, read.Body.Len())
			}
		}
	}
	if !sawWrite || !sawAudit || !sawRead {
		t.Errorf("log lines: write %v, audit failure %v, read %v, want all: %s", sawWrite, sawAudit, sawRead, logs.String())
	}
}

// TestReadNotAnsweredUnaudited: a read or search whose AuditEvent cannot
// be written is not answered: the client gets 503 with Retry-After and an
// OperationOutcome, never the resource.
func TestReadNotAnsweredUnaudited(t *testing.T) {
	st := tempSQLite(t, sqlite.Options{})
	fw := &failingWrites{Store: st}
	s := newServer(t, app.Config{Store: fw}, gateway.Config{})
	rec := do(s, http.MethodPost, "/fhir/Patient", gateway.ContentTypeFHIR,
		[]byte(`{"resourceType":"Patient","name":[{"family":"Unaudited"}]}`))
	if rec.Code != http.StatusCreated {
		t.Fatalf("create = %d %s", rec.Code, rec.Body)
	}
	id := strings.TrimPrefix(strings.Split(rec.Header().Get("Location"), "/_history")[0], "Patient/")
	id = id[strings.LastIndex(id, "/")+1:]
	if rec := do(s, http.MethodGet, "/fhir/Patient/"+id, "", nil); rec.Code != http.StatusOK {
		t.Fatalf("read while audits are written = %d", rec.Code)
	}
	fw.fail.Store(true)
	for _, path := range []string{"/fhir/Patient/" + id, "/fhir/Patient?name=unaudited", "/fhir/Patient/" + id + "/_history"} {
		rec := do(s, http.MethodGet, path, "", nil)
		body := rec.Body.String()
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" ||
			!strings.Contains(body, "audit-unavailable") || !strings.Contains(body, "OperationOutcome") {
			t.Errorf("GET %s without audit = %d (Retry-After %q) %s, want 503 audit-unavailable", path, rec.Code, rec.Header().Get("Retry-After"), body)
		}
		if strings.Contains(body, "Unaudited") || strings.Contains(body, id) || rec.Header().Get("ETag") != "" {
			t.Errorf("GET %s without audit leaked the resource: %s", path, body)
		}
	}
	// What discloses nothing, the same for every caller, is answered all
	// the same (a PostgreSQL operator's review: /fhir/metadata, a FHIR
	// health check, answered 503 while the database was down).
	for _, path := range []string{"/fhir/metadata", "/fhir/metadata?_summary=true"} {
		if rec := do(s, http.MethodGet, path, "", nil); rec.Code != http.StatusOK {
			t.Errorf("GET %s without audit = %d %s, want 200", path, rec.Code, rec.Body)
		}
	}
}

// TestWriteBackPressure: a write that finds the store's write queue full
// is answered 503 store-busy with Retry-After and an OperationOutcome
// (not audit-unavailable: its own AuditEvent is not refused by the full
// queue, it waits in the slot kept for the audit trail and is written
// before the answer leaves), logged at WARN with the cause "write queue
// full", and nothing of it is stored.
func TestWriteBackPressure(t *testing.T) {
	st := tempSQLite(t, sqlite.Options{MaxQueue: 1})
	var logs syncBuf
	s := newServer(t, app.Config{Store: st}, gateway.Config{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	// Hold the write connection, and fill the queue behind it.
	release, running := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	var once, released sync.Once
	wg.Go(func() {
		for {
			ran := false
			err := st.Write(context.Background(), func(store.Tx) error {
				ran = true
				once.Do(func() { close(running) })
				<-release
				return nil
			})
			if ran || err == nil {
				return
			}
			// Refused before it ran: the application's own writes (its
			// start, the job runner) filled the one-write queue. Again.
			time.Sleep(time.Millisecond) // waiting for the queue, not timing anything
		}
	})
	<-running
	wg.Go(func() { _ = st.Write(context.Background(), func(store.Tx) error { return nil }) })
	for st.QueuedWrites() < 1 {
		time.Sleep(time.Millisecond) // polling the queue, not timing anything
	}
	// Once the refused create's AuditEvent waits in the queue (beyond its
	// bound of one), let the writes go.
	answered := make(chan struct{})
	wg.Go(func() {
		for st.QueuedWrites() < 2 {
			select {
			case <-answered:
				return
			default:
				time.Sleep(time.Millisecond) // polling the queue, not timing anything
			}
		}
		released.Do(func() { close(release) })
	})
	rec := do(s, http.MethodPost, "/fhir/Patient", gateway.ContentTypeFHIR,
		[]byte(`{"resourceType":"Patient","name":[{"family":"Pressed"}]}`))
	close(answered)
	released.Do(func() { close(release) })
	wg.Wait()
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" ||
		!strings.Contains(rec.Body.String(), `"store-busy"`) {
		t.Errorf("create with a full write queue = %d (Retry-After %q) %s, want 503 store-busy with Retry-After",
			rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	refusals := 0
	if err := st.AuditChainAfter(context.Background(), 0, func(e audit.ChainEntry) error {
		if strings.Contains(string(e.Body), "store-busy") {
			refusals++
		}
		return nil
	}); err != nil || refusals != 1 {
		t.Errorf("AuditEvents of the refusal (store-busy): %d, %v; want 1", refusals, err)
	}
	for line := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) != nil {
			continue
		}
		if l["level"] == "ERROR" || l["msg"] == "audit write failed" {
			t.Errorf("back-pressure logged %v, want no ERROR and no audit failure", l)
		}
		if class, _ := l["error_class"].(string); l["msg"] == "request" && l["method"] == "POST" &&
			(l["level"] != "WARN" || !strings.Contains(class, "cause: write queue full")) {
			t.Errorf("the refused write's line = %v, want WARN with error_class naming the write queue full", l)
		}
	}
	// Asked of the store itself: a search over HTTP writes an AuditEvent,
	// which the one-write queue may refuse again if the application's own
	// writes (the audit indexer, the job runner) hold it at that moment.
	q, err := search.ParseConditional("Patient", "name=pressed")
	if err != nil {
		t.Fatal(err)
	}
	q.Total = true
	if page, err := st.Search(context.Background(), q); err != nil || page.Total != 0 {
		t.Errorf("after the refused create: %+v, %v; want no Patient", page, err)
	}
}

// TestBusyRefusalNotBlamedOnAudit: when even a back-pressure refusal's
// AuditEvent cannot be written, the refusal (which disclosed and wrote
// nothing) is still answered store-busy, not audit-unavailable, and the
// audit failure is logged at WARN with its cause, not at ERROR; a read is
// still not answered unaudited.
func TestBusyRefusalNotBlamedOnAudit(t *testing.T) {
	st := tempSQLite(t, sqlite.Options{})
	fw := &failingWrites{Store: st, err: fmt.Errorf("test: %w", store.ErrBusy)}
	var logs syncBuf
	s := newServer(t, app.Config{Store: fw}, gateway.Config{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	fw.fail.Store(true)
	rec := do(s, http.MethodPost, "/fhir/Patient", gateway.ContentTypeFHIR, []byte(`{"resourceType":"Patient"}`))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" ||
		!strings.Contains(rec.Body.String(), `"store-busy"`) {
		t.Errorf("create with the queue full, unaudited = %d (Retry-After %q) %s, want 503 store-busy",
			rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	if read := do(s, http.MethodGet, "/fhir/Patient?_count=1", "", nil); !strings.Contains(read.Body.String(), "audit-unavailable") {
		t.Errorf("search unaudited = %d %s, want 503 audit-unavailable", read.Code, read.Body)
	}
	for line := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) != nil || l["msg"] != "audit write failed" {
			continue
		}
		if class, _ := l["error_class"].(string); l["level"] != "WARN" || !strings.Contains(class, "cause: write queue full") {
			t.Errorf("audit write failed = %v, want WARN naming the write queue full", l)
		}
	}
}

// TestJobFileNotAnsweredUnaudited: a job file download streams its body
// once its AuditEvent is committed; an answer it gives instead (a refusal
// before streaming) is held like any other until audited, so it is not
// given when the audit cannot be written.
func TestJobFileNotAnsweredUnaudited(t *testing.T) {
	st := tempSQLite(t, sqlite.Options{})
	fw := &failingWrites{Store: st}
	s := newServer(t, app.Config{Store: fw}, gateway.Config{})
	created := do(s, http.MethodPost, "/fhir/Patient", gateway.ContentTypeFHIR,
		[]byte(`{"resourceType":"Patient","name":[{"family":"Exported"}]}`))
	if created.Code != http.StatusCreated {
		t.Fatalf("create = %d %s", created.Code, created.Body)
	}
	var patient struct{ ID string }
	_ = json.Unmarshal(created.Body.Bytes(), &patient)
	kick := httptest.NewRequest(http.MethodGet, "/fhir/$export", nil)
	kick.Header.Set("Prefer", "respond-async")
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, kick)
	status := rec.Header().Get("Content-Location")
	if rec.Code != http.StatusAccepted || status == "" {
		t.Fatalf("export kick-off = %d %s", rec.Code, rec.Body)
	}
	status = status[strings.Index(status, "/jobs/"):]
	var manifest struct {
		Output []struct{ Type, URL string }
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		rec := do(s, http.MethodGet, status, "", nil)
		if rec.Code == http.StatusOK {
			if err := json.Unmarshal(rec.Body.Bytes(), &manifest); err != nil || len(manifest.Output) == 0 {
				t.Fatalf("manifest %s: %v", rec.Body, err)
			}
			break
		}
		if rec.Code != http.StatusAccepted || time.Now().After(deadline) {
			t.Fatalf("export status = %d %s", rec.Code, rec.Body)
		}
		time.Sleep(10 * time.Millisecond) // polling a background job, not timing anything
	}
	file := ""
	for _, o := range manifest.Output {
		if o.Type == "Patient" {
			file = o.URL[strings.Index(o.URL, "/jobs/"):]
		}
	}
	if file == "" {
		t.Fatalf("the manifest lists no Patient file: %+v", manifest)
	}
	audits := func() int {
		t.Helper()
		n := 0
		if err := st.AuditChainAfter(context.Background(), 0, func(audit.ChainEntry) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := audits()
	rec = do(s, http.MethodGet, file, "", nil)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "Exported") {
		t.Fatalf("GET %s = %d %.300s", file, rec.Code, rec.Body)
	}
	if n := audits() - before; n != 1 {
		t.Errorf("the download left %d AuditEvents, want 1", n)
	}
	// It names the patient whose data the file holds.
	var last []byte
	_ = st.AuditChainAfter(context.Background(), 0, func(e audit.ChainEntry) error { last = e.Body; return nil })
	if want := `"role":{"code":"1","display":"Patient"`; !strings.Contains(string(last), want) ||
		!strings.Contains(string(last), `"reference":"Patient/`+patient.ID+`"`) {
		t.Errorf("the download's AuditEvent does not name Patient/%s: %s", patient.ID, last)
	}

	fw.fail.Store(true)
	for _, path := range []string{file, status + "/files/99", "/jobs/nope/files/1"} {
		rec := do(s, http.MethodGet, path, "", nil)
		if body := rec.Body.String(); rec.Code != http.StatusServiceUnavailable || !strings.Contains(body, "audit-unavailable") ||
			strings.Contains(body, "Exported") {
			t.Errorf("GET %s without audit = %d %.300s, want 503 audit-unavailable", path, rec.Code, body)
		}
	}
}

// TestUnavailableLoggedAsWarning: a request the gateway could not serve
// (503: the store refuses writes) is logged at WARN, so that an operator
// filtering the log by level sees it; a client's mistake stays at INFO.
func TestUnavailableLoggedAsWarning(t *testing.T) {
	st := tempSQLite(t, sqlite.Options{})
	fw := &failingWrites{Store: st}
	var logs syncBuf
	s := newServer(t, app.Config{Store: fw}, gateway.Config{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	fw.fail.Store(true)
	if rec := do(s, http.MethodPost, "/fhir/Patient", gateway.ContentTypeFHIR, []byte(`{"resourceType":"Patient"}`)); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("create while writes fail = %d %s", rec.Code, rec.Body)
	}
	fw.fail.Store(false)
	if rec := do(s, http.MethodPost, "/fhir/Patient", gateway.ContentTypeFHIR, []byte(`{"resourceType":"Nope"}`)); rec.Code/100 != 4 {
		t.Fatalf("a client's mistake = %d", rec.Code)
	}
	levels := map[float64]string{}
	for line := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) == nil && l["msg"] == "request" {
			levels[l["status"].(float64)] = l["level"].(string)
		}
	}
	if levels[503] != "WARN" || levels[400] != "INFO" {
		t.Errorf("request line levels = %v, want 503 at WARN and 400 at INFO", levels)
	}
}

// syncBuf is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestReadyWhileLocked: while another process holds the SQLite database's
// write lock (a backup tool's BEGIN EXCLUSIVE), the database answers reads
// but every write would fail: /readyz answers 503 with Retry-After and
// "database": "locked", and 200 again once the lock is released.
func TestReadyWhileLocked(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kg.db")
	st, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	other, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	s := newServer(t, app.Config{Store: st}, gateway.Config{})
	ready := func() (int, string, string) {
		rec := do(s, http.MethodGet, "/readyz", "", nil)
		var body struct{ Database string }
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		return rec.Code, body.Database, rec.Header().Get("Retry-After")
	}
	if code, db, _ := ready(); code != http.StatusOK || db != "ok" {
		t.Fatalf("/readyz = %d database %q, want 200 ok", code, db)
	}
	holding, release, done := make(chan struct{}), make(chan struct{}), make(chan error)
	go func() {
		done <- other.Write(ctx, func(store.Tx) error { close(holding); <-release; return nil })
	}()
	<-holding
	code, db, retry := ready()
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if code != http.StatusServiceUnavailable || db != "locked" || retry == "" {
		t.Errorf("/readyz while another process holds the write lock = %d database %q Retry-After %q, want 503 locked", code, db, retry)
	}
	if code, db, _ := ready(); code != http.StatusOK || db != "ok" {
		t.Errorf("/readyz once the lock is free = %d database %q, want 200 ok", code, db)
	}
}
