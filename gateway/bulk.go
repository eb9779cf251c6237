package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/bulk"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/jobs"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/reindex"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/replay"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// Bulk data (docs/bulk.md): the $export kick-offs, the asynchronous
// import, and the jobs they start (status, cancel, files).

// DefaultMaxImportBytes is the default limit of an asynchronous import's
// body.
const DefaultMaxImportBytes = 1 << 30

var (
	errNDJSONType = outcome.New(outcome.UnsupportedMedia, "not-supported", "content-type-unsupported",
		"the body must be NDJSON: application/fhir+ndjson, application/ndjson or application/x-ndjson")
)

// rootURL is where the gateway is reached: the FHIR base without /fhir.
func (s *Server) rootURL(c echo.Context) string {
	return strings.TrimSuffix(s.baseURL(c), "/fhir")
}

// handleExport is GET [base]/$export, [base]/Patient/$export and
// [base]/Group/{id}/$export: 202 with the job's status URL.
func (s *Server) handleExport(level string) echo.HandlerFunc {
	return func(c echo.Context) error {
		root := s.rootURL(c)
		j, err := s.app.Bulk.Export(c.Request().Context(), scopeOf(c), bulk.ExportParams{
			Level: level, Group: c.Param("id"), Query: c.QueryParams(), Prefer: preferHeader(c),
			Request: root + c.Request().URL.RequestURI(), Base: root, NoToken: s.cfg.Auth == nil,
		})
		if err != nil {
			return err
		}
		c.Response().Header().Set("Content-Location", root+"/jobs/"+j.ID)
		return writeResource(c, http.StatusAccepted, outcome.Information("the export has started; its status is at Content-Location"))
	}
}

// handleImport is POST /ingest/{kind}/$import: the NDJSON body is stored
// as a job's input; 202 with the job's status URL.
func (s *Server) handleImport(c echo.Context) error {
	kind := mapping.Kind(c.Param("kind"))
	if !ingest.KnownKind(kind) {
		return ingest.ErrKindUnknown
	}
	if err := queryParams(c, "deliver", "_pretty"); err != nil {
		if _, dry := c.QueryParams()["dryRun"]; dry {
			return outcome.New(outcome.Invalid, "not-supported", "parameter-unknown", "an import has no dry run: "+
				"check the records first with POST /ingest/{kind}?dryRun=true, one record per request; nothing was done")
		}
		return err
	}
	deliver, err := boolParam(c, "deliver")
	if err != nil {
		return err
	}
	mt, _, err := mime.ParseMediaType(c.Request().Header.Get("Content-Type"))
	if err != nil || (mt != "application/fhir+ndjson" && mt != "application/ndjson" && mt != "application/x-ndjson") {
		return errNDJSONType
	}
	limit := s.cfg.MaxImportBytes
	if c.Request().ContentLength > limit {
		return bodyTooLarge(limit, "--max-import", "split the NDJSON file and import the parts one after the other")
	}
	root := s.rootURL(c)
	j, err := s.app.Bulk.SubmitImport(c.Request().Context(), scopeOf(c), kind, deliver, c.Request().Body, limit, root)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Content-Location", root+"/jobs/"+j.ID)
	return writeResource(c, http.StatusAccepted, outcome.Information("the import has started; its status is at Content-Location"))
}

// jobView is a job's status document (for jobs other than exports once
// done, and for every job while it runs).
type jobView struct {
	ID       string          `json:"id"`
	Kind     string          `json:"kind"`
	Status   string          `json:"status"`
	Done     int64           `json:"done"`
	Total    *int64          `json:"total,omitempty"`
	Created  time.Time       `json:"created"`
	Updated  time.Time       `json:"updated"`
	Finished *time.Time      `json:"finished,omitempty"`
	Expires  *time.Time      `json:"expires,omitempty"`
	Result   json.RawMessage `json:"result,omitempty"`
}

func newJobView(j *store.Job) jobView {
	v := jobView{ID: j.ID, Kind: j.Kind, Status: j.Status, Done: j.Done, Created: j.Created, Updated: j.Updated}
	if j.Total >= 0 {
		v.Total = &j.Total
	}
	if !j.Finished.IsZero() {
		v.Finished = &j.Finished
	}
	if !j.Expires.IsZero() && j.Status != store.JobUploading {
		v.Expires = &j.Expires
	}
	if j.Status == store.JobDone && len(j.Result) > 0 {
		v.Result = j.Result
	}
	return v
}

// progress is a job's X-Progress: its state and counts, no content.
func progress(j *store.Job) string {
	what := map[string]string{bulk.KindExport: "resources exported", bulk.KindImport: "records imported",
		reindex.KindReindex: "resources checked"}[j.Kind]
	if what == "" {
		what = "records done"
	}
	if j.Total >= 0 {
		pct := 0
		if j.Total > 0 {
			pct = int(100 * j.Done / j.Total)
		}
		return fmt.Sprintf("%s: %d of %d %s (%d%%)", j.Status, j.Done, j.Total, what, pct)
	}
	return fmt.Sprintf("%s: %d %s", j.Status, j.Done, what)
}

// handleJob is GET /jobs/{id}: 202 with X-Progress and Retry-After while
// the job runs; 200 with its result when done (an export's manifest, as
// the Bulk Data specification has it); 500 with an OperationOutcome when
// it failed; 404 for a job that is not the caller's, cancelled or expired.
func (s *Server) handleJob(c echo.Context) error {
	sc := scopeOf(c)
	j, err := s.app.Jobs.Job(c.Request().Context(), sc, c.Param("id"))
	if err != nil {
		return err
	}
	sc.Description = fmt.Sprintf("%s job %s: %s", j.Kind, j.ID, j.Status)
	h := c.Response().Header()
	switch j.Status {
	case store.JobDone:
		h.Set("Expires", j.Expires.UTC().Format(http.TimeFormat))
		if j.Kind == bulk.KindExport {
			return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, j.Result)
		}
		return c.JSON(http.StatusOK, newJobView(j))
	case store.JobFailed:
		return &outcome.Error{Kind: outcome.Internal, Issues: []outcome.Issue{{Severity: "error", Code: "processing",
			Rule: jobs.FailureRule(j), Message: "the job failed: " + j.Error}}}
	}
	h.Set("X-Progress", progress(j))
	h.Set("Retry-After", "2")
	return c.JSON(http.StatusAccepted, newJobView(j))
}

// handleCancelJob is DELETE /jobs/{id}: a running job is cancelled, a
// finished one deleted, with its files; 202.
func (s *Server) handleCancelJob(c echo.Context) error {
	sc := scopeOf(c)
	j, err := s.app.Jobs.Job(c.Request().Context(), sc, c.Param("id"))
	if err != nil {
		return err
	}
	if err := s.app.Jobs.Cancel(c.Request().Context(), sc, c.Param("id")); err != nil {
		return err
	}
	if jobs.Ended(j) {
		// Nothing was stopped: a finished export deleted, as the Bulk
		// Data specification has a client do once it has its files.
		return writeResource(c, http.StatusAccepted, outcome.Information("the job had ended ("+j.Status+"): it and its files are deleted"))
	}
	return writeResource(c, http.StatusAccepted, outcome.Information("the job is cancelled and its files are deleted"))
}

// errHeadOnly stops reading a file whose headers alone are asked (HEAD).
var errHeadOnly = errors.New("headers only")

// acceptsNDJSON reports whether Accept headers (none: anything) take an
// NDJSON file: application/fhir+ndjson, application/ndjson,
// application/x-ndjson or a wildcard, with a q above 0.
func acceptsNDJSON(accept []string) bool {
	if len(accept) == 0 {
		return true
	}
	for _, h := range accept {
		for part := range strings.SplitSeq(h, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			switch mt {
			case "*/*", "application/*", "application/fhir+ndjson", "application/ndjson", "application/x-ndjson":
			default:
				continue
			}
			if q, err := strconv.ParseFloat(params["q"], 64); err == nil && q <= 0 {
				continue
			}
			return true
		}
	}
	return false
}

// handleJobFile is GET /jobs/{id}/files/{n}: one NDJSON file of the
// caller's job, streamed from the database part by part once the
// download's AuditEvent is committed.
func (s *Server) handleJobFile(c echo.Context) error {
	sc := scopeOf(c)
	n, err := strconv.Atoi(c.Param("n"))
	if err != nil || n < 1 || strconv.Itoa(n) != c.Param("n") { // one spelling per file: 01 or +1 is none
		return jobs.ErrFileUnknown
	}
	ctx := c.Request().Context()
	j, err := s.app.Jobs.Job(ctx, sc, c.Param("id"))
	if err != nil {
		return err
	}
	if j.Status != store.JobDone {
		return outcome.New(outcome.Conflict, "conflict", "job-not-done", "the job's files are served once it is done")
	}
	// The download's token must cover the file's type, whatever the
	// kick-off's token could read (docs/bulk.md, Security and audit).
	if err := s.app.Bulk.CheckDownload(sc, j, n); err != nil {
		return err
	}
	ctype := "application/x-ndjson"
	if j.Kind == bulk.KindExport {
		ctype = "application/fhir+ndjson"
	}
	if !acceptsNDJSON(c.Request().Header.Values("Accept")) {
		return outcome.New(outcome.NotAcceptable, "not-supported", "format-unsupported",
			"a job's files are NDJSON ("+ctype+"): send Accept: "+ctype+" or none")
	}
	if c.Request().Method == http.MethodHead {
		// The headers only: the file's first part is looked at to know it
		// exists (with a scope of its own: the AuditEvent names no
		// patient, since nothing of the file is sent).
		sc.Description = fmt.Sprintf("%s job %s: file %d, headers only (HEAD)", j.Kind, j.ID, n)
		exists := false
		err := s.app.Jobs.File(ctx, auditlog.NewScope("", sc.Principal), j.ID, n, func([]byte) error {
			exists = true
			return errHeadOnly
		})
		switch {
		case err != nil && !errors.Is(err, errHeadOnly):
			return err
		case !exists:
			return jobs.ErrFileUnknown
		}
		c.Response().Header().Set(echo.HeaderContentType, ctype)
		return c.NoContent(http.StatusOK)
	}
	sc.Description = fmt.Sprintf("%s job %s: file %d", j.Kind, j.ID, n)
	if n == 1 && replay.ShowsValues(j) {
		// The report shows the records' old and new values: the patients'
		// data (jobs.File names them from the report's companion file).
		sc.Disclosed = replay.ValuesDisclosed
		sc.Description += "; " + sc.Disclosed
	}
	rc := http.NewResponseController(c.Response())
	started := false
	err = s.app.Jobs.File(ctx, sc, j.ID, n, func(part []byte) error {
		if !started {
			if err := s.auditNow(c, http.StatusOK); err != nil {
				return err
			}
			c.Response().Header().Set(echo.HeaderContentType, ctype)
			c.Response().WriteHeader(http.StatusOK)
			started = true
		}
		// A large file may take longer than the server's write timeout:
		// each part gets its own.
		_ = rc.SetWriteDeadline(time.Now().Add(time.Minute))
		_, err := c.Response().Write(part)
		return err
	})
	switch {
	case err != nil && !started:
		return err
	case err != nil:
		// The body is cut short; the client sees a truncated transfer.
		s.log.Warn("job file download interrupted", "route", c.Path(), "error_class", fmt.Sprintf("%T", err))
		return nil
	case !started:
		return jobs.ErrFileUnknown
	}
	return nil
}
