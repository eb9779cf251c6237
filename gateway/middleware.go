package gateway

import (
	"fmt"
	"mime"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/telemetry"
)

// logRequests writes one structured line per request: the route template
// (never the raw URL, which may carry identifiers in its query), the status
// and the duration.
func (s *Server) logRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		s.log.InfoContext(c.Request().Context(), "request", "method", c.Request().Method, "route", c.Path(),
			"status", c.Response().Status, "bytes", c.Response().Size,
			"duration_ms", float64(time.Since(start).Microseconds())/1000)
		return nil
	}
}

// routeTemplate tells the tracing layer the matched route template, which
// names the server span (never the raw path, which may carry ids).
func (s *Server) routeTemplate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		telemetry.SetRoute(c.Request().Context(), c.Path())
		return next(c)
	}
}

// recoverPanics turns a panic into a 500 OperationOutcome. The panic value
// is not logged (it may hold request data); the stack is.
func (s *Server) recoverPanics(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				s.log.Error("panic", "route", c.Path(), "stack", string(debug.Stack()))
				err = fmt.Errorf("panic in handler for %s", c.Path())
			}
		}()
		return next(c)
	}
}

// fhirFormat enforces FHIR content negotiation: JSON only. An explicit
// _format or Accept that excludes JSON gets 406.
func (s *Server) fhirFormat(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if f := c.QueryParam("_format"); f != "" && !jsonFormat(f) {
			return errorf(http.StatusNotAcceptable, "not-supported", "format-unsupported", "only JSON is supported (_format=json)")
		}
		if a := c.Request().Header.Get("Accept"); a != "" && !acceptsJSON(a) {
			return errorf(http.StatusNotAcceptable, "not-supported", "format-unsupported", "only application/fhir+json is available")
		}
		return next(c)
	}
}

func jsonFormat(f string) bool {
	switch strings.ToLower(strings.TrimSpace(f)) {
	case "json", "application/json", "application/fhir+json", "application/json+fhir":
		return true
	}
	return false
}

func acceptsJSON(accept string) bool {
	for _, part := range strings.Split(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mt {
		case "*/*", "application/*", "application/json", "application/fhir+json", "application/json+fhir":
			return true
		}
	}
	return false
}
