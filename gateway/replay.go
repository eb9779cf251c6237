package gateway

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/replay"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// handleReplayJob is POST /admin/replay?kind=&since=&tenant=&source=
// [&apply=true&reason=][&showValues=true]: the mapping replay as a job
// (docs/mapping.md); 202 with its status URL.
func (s *Server) handleReplayJob(c echo.Context) error {
	opts := replay.Options{Kind: mapping.Kind(c.QueryParam("kind")), Source: c.QueryParam("source"),
		Tenant: c.QueryParam("tenant"), Reason: c.QueryParam("reason")}
	var err error
	if opts.Since, err = timeParam(c, "since"); err != nil {
		return err
	}
	if opts.Apply, err = boolParam(c, "apply"); err != nil {
		return err
	}
	if opts.ShowValues, err = boolParam(c, "showValues"); err != nil {
		return err
	}
	if opts.Downgrade, err = boolParam(c, "downgrade"); err != nil {
		return err
	}
	if _, ok := c.QueryParams()["tenant"]; !ok {
		opts.Tenant = "*" // every tenant the operator may see
	}
	root := s.rootURL(c)
	j, err := s.app.Replay.Submit(c.Request().Context(), scopeOf(c), opts, root)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Content-Location", root+"/jobs/"+j.ID)
	what := "the replay (a dry run: nothing is written) has started"
	if opts.Apply {
		what = "the replay has started and writes the changes"
	}
	return writeResource(c, http.StatusAccepted, outcome.Information(what+"; its status is at Content-Location"))
}
