package gateway

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// index is GET /, the first URL a newcomer opens: a browser goes to the
// console when this gateway has one; anyone else gets a small JSON index
// of the endpoints this gateway has (paths only, nothing of its data, so
// it is public and not audited, as the health probes). Any other unknown
// path stays a 404 route-unknown.
func (s *Server) index(c echo.Context) error {
	console := s.cfg.Console != nil
	if console && strings.Contains(c.Request().Header.Get("Accept"), "text/html") {
		return c.Redirect(http.StatusFound, "console/") // relative: a proxy's path prefix stays
	}
	links := map[string]string{
		"liveness": "/healthz",
		"ingest":   "/ingest/{kind}",
	}
	if s.app.Store != nil {
		links["fhir"] = "/fhir"
		links["capabilityStatement"] = "/fhir/metadata"
		links["readiness"] = "/readyz"
	}
	if console {
		links["console"] = "/console/"
	}
	return c.JSON(http.StatusOK, map[string]any{
		"service": "ketamine-gateway",
		"about": "a FHIR R4 gateway: native clinic records are POSTed to /ingest/{kind}; the FHIR API is below /fhir " +
			"(its CapabilityStatement at /fhir/metadata); people use the console",
		"links": links,
	})
}
