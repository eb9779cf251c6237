package gateway

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/reindex"
)

// handleReindexJob is POST /admin/reindex[?type=][&dryRun=true][&batch=]:
// the search index rebuilt from the stored bodies as a job
// (docs/deployment.md), for an operator of every tenant; 202 with its
// status URL.
func (s *Server) handleReindexJob(c echo.Context) error {
	opts := reindex.Options{Type: c.QueryParam("type")}
	var err error
	if opts.DryRun, err = boolParam(c, "dryRun"); err != nil {
		return err
	}
	if opts.Batch, err = countParam(c, "batch"); err != nil {
		return err
	}
	j, err := s.app.Reindex.Submit(c.Request().Context(), scopeOf(c), opts)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Content-Location", s.rootURL(c)+"/jobs/"+j.ID)
	what := "the reindex has started"
	if opts.DryRun {
		what = "the reindex (a dry run: nothing is written) has started"
	}
	return writeResource(c, http.StatusAccepted, outcome.Information(what+"; its status is at Content-Location"))
}
