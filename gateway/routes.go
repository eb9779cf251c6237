package gateway

// routes is the whole HTTP API on one page.
func (s *Server) routes() {
	e := s.echo
	e.GET("/healthz", s.healthz)

	// Native records: validate, map and (from the FHIR API on) store.
	e.POST("/ingest/:kind", s.ingest, s.fhirFormat)

	// The gateway's own conformance resources.
	e.GET("/fhir/CodeSystem/:id", s.readCodeSystem, s.fhirFormat)
}
