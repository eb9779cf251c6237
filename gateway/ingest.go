package gateway

import (
	"context"
	"fmt"
	"net/http"

	"go.opentelemetry.io/otel/attribute"

	"github.com/labstack/echo/v4"

	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// healthz is the liveness probe: cheap, no dependencies.
func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// ingest validates a native record, maps it and answers with the
// transaction Bundle (dryRun=true). Storing arrives with the FHIR API.
func (s *Server) ingest(c echo.Context) error {
	kind := mapping.Kind(c.Param("kind"))
	if !knownKind(kind) {
		return errKindUnknown
	}
	dryRun, err := boolParam(c, "dryRun")
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	attrs := []attribute.KeyValue{attribute.String("ingest.kind", string(kind)), attribute.String("mapping.version", mapping.Version)}
	var body []byte
	err = s.stage(ctx, "ingest.decode", func(context.Context) error {
		var err error
		body, err = readBody(c, s.cfg.MaxBodyBytes)
		return err
	}, attrs...)
	if err != nil {
		return err
	}
	err = s.stage(ctx, "ingest.schema", func(context.Context) error {
		return s.pipeline.ValidateRecord(kind, body)
	}, attrs...)
	var (
		res  *mapping.Result
		raws [][]byte
	)
	if err == nil {
		err = s.stage(ctx, "ingest.map", func(context.Context) error {
			var err error
			res, err = s.pipeline.MapValid(kind, body, s.pipeline.opts)
			return err
		}, attrs...)
	}
	if err == nil {
		err = s.stage(ctx, "fhir.validate", func(context.Context) error {
			var err error
			raws, err = s.pipeline.ValidateMapped(res)
			return err
		}, append(attrs, attribute.Int("fhir.entry_count", len(res.Entries)))...)
	}
	if err != nil {
		s.cfg.Metrics.IngestRecord(ctx, string(kind), "rejected")
		return err
	}
	if !dryRun {
		if s.store == nil {
			return errorf(http.StatusNotImplemented, "not-supported", "storage-unavailable",
				"this gateway runs without a store; use dryRun=true to validate and map")
		}
		if err := s.storeRecord(c, kind, body, res, raws); err != nil {
			s.cfg.Metrics.IngestRecord(ctx, string(kind), "failed")
			return err
		}
		s.cfg.Metrics.IngestRecord(ctx, string(kind), "stored")
		return nil
	}
	bundle, err := res.Transaction()
	if err != nil {
		return fmt.Errorf("render %s bundle: %w", kind, err)
	}
	auditOf(c).description = fmt.Sprintf("%s record dry run: nothing stored", kind)
	return writeResource(c, http.StatusOK, bundle)
}

// boolParam reads an optional true/false query parameter.
func boolParam(c echo.Context, name string) (bool, error) {
	switch c.QueryParam(name) {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	default:
		return false, errorf(http.StatusBadRequest, "invalid", "parameter-invalid", name+" must be true or false")
	}
}
