package gateway

import "github.com/ketamine-gateway/ketamine-gateway/gateway/auth"

// routes is the whole HTTP API on one page.
func (s *Server) routes() {
	e := s.echo
	e.GET("/healthz", s.healthz)

	// SMART Backend Services: discovery and the token endpoint.
	e.GET("/.well-known/smart-configuration", s.handleSmartConfiguration)
	e.GET("/fhir/.well-known/smart-configuration", s.handleSmartConfiguration)
	e.POST("/auth/token", s.handleToken)

	// Native records: validate, map and store.
	e.POST("/ingest/:kind", s.ingest, s.fhirFormat, requireScope(auth.ScopeIngest))

	if s.store == nil {
		// Without a store only the gateway's own conformance resources are served.
		e.GET("/fhir/CodeSystem/:id", s.readCodeSystem, s.fhirFormat)
		return
	}

	// Readiness and the operator API (docs/operations.md).
	e.GET("/readyz", s.handleReady)
	a := e.Group("/admin", requireScope(auth.ScopeOperator))
	a.GET("/deliveries", s.handleListDeliveries)
	a.GET("/deliveries/:id", s.handleShowDelivery)
	a.POST("/deliveries/:id/retry", s.handleRetryDelivery)
	a.POST("/deliveries/replay", s.handleReplay)
	// The auditor's API (docs/audit.md).
	a.GET("/lineage", s.handleLineage)
	a.GET("/audit/verify", s.handleVerifyAudit)

	// The FHIR R4 RESTful API (http.html).
	f := e.Group("/fhir", s.fhirFormat)
	f.GET("/metadata", s.handleMetadata)
	f.POST("", s.handleBundle)
	f.POST("/", s.handleBundle)
	f.GET("/_history", s.handleHistory)
	f.POST("/$validate", s.handleValidate)
	f.GET("/:type", s.handleSearch)
	f.POST("/:type/_search", s.handleSearch)
	f.POST("/:type", s.handleCreate)
	f.PUT("/:type", s.handleConditionalUpdate)
	f.POST("/:type/$validate", s.handleValidate)
	f.GET("/:type/_history", s.handleHistory)
	f.GET("/:type/:id", s.handleRead)
	f.PUT("/:type/:id", s.handleUpdate)
	f.DELETE("/:type/:id", s.handleDelete)
	f.PATCH("/:type/:id", s.handlePatch)
	f.GET("/:type/:id/_history", s.handleHistory)
	f.GET("/:type/:id/_history/:vid", s.handleVRead)
}
