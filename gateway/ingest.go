package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/conformance"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/profile"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/telemetry/stage"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// healthz is the liveness probe: cheap, no dependencies.
func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// tracer is the edge's tracer (a no-op one without telemetry).
func (s *Server) tracer() trace.Tracer { return stage.Tracer(s.cfg.Telemetry.TracerProvider()) }

// ingest is POST /ingest/{kind}: validate, map and store a native record
// (or, with dryRun=true, answer the mapped transaction Bundle).
func (s *Server) ingest(c echo.Context) error {
	kind := mapping.Kind(c.Param("kind"))
	if !ingest.KnownKind(kind) {
		return ingest.ErrKindUnknown
	}
	if err := queryParams(c, "dryRun", "_format", "_pretty"); err != nil {
		return err
	}
	dryRun, err := boolParam(c, "dryRun")
	if err != nil {
		return err
	}
	var body []byte
	err = stage.Run(c.Request().Context(), s.tracer(), "ingest.decode", func(context.Context) error {
		var err error
		body, err = readBody(c, s.cfg.MaxBodyBytes)
		return err
	}, attribute.String("ingest.kind", string(kind)), attribute.String("mapping.version", mapping.Version))
	if err != nil {
		return err
	}
	out, err := s.app.Ingest.Ingest(c.Request().Context(), scopeOf(c), kind, body, dryRun, s.answer(c))
	if err != nil {
		return err
	}
	return writeRaw(c, http.StatusOK, out)
}

// boolParam reads an optional true/false query parameter (given without
// a value, it is neither).
func boolParam(c echo.Context, name string) (bool, error) {
	vals, given := c.QueryParams()[name]
	switch {
	case !given:
		return false, nil
	case vals[0] == "false":
		return false, nil
	case vals[0] == "true":
		return true, nil
	default:
		return false, paramInvalid(name + " must be true or false")
	}
}

// readConformance serves the gateway's own conformance resources (its
// CodeSystems, ValueSets, StructureDefinitions, SearchParameters,
// OperationDefinitions, ImplementationGuide) by type and id when it runs
// without a store (with one, they are stored resources).
func (s *Server) readConformance(c echo.Context) error {
	all, err := ownConformance()
	if err != nil {
		return err
	}
	for _, r := range all {
		if r.ResourceType == c.Param("type") && r.ID == c.Param("id") {
			return writeResource(c, http.StatusOK, json.RawMessage(r.JSON))
		}
	}
	return errConformanceUnknown
}

// ownConformance renders the gateway's conformance resources once per
// process: they are fixed, and rendering them all (the
// ImplementationGuide included) is not work for every read.
var ownConformance = sync.OnceValues(func() ([]conformance.Resource, error) {
	p, err := profile.New()
	if err != nil {
		return nil, err
	}
	return conformance.All(p)
})
