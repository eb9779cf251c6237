package gateway

import (
	"net/http"
	"slices"

	"github.com/labstack/echo/v4"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/bulk"
)

// route is one row of the route table: every fact about a route in one
// place. The middleware looks a request's row up by its matched template.
type route struct {
	method, path string
	handle       echo.HandlerFunc
	// interaction is what the route's AuditEvent records; "" with exempt
	// set means the route is not audited (health probes, which carry no
	// data and are polled every few seconds).
	interaction string
	exempt      bool
	// discloses nothing: the answer is the same for every caller and
	// holds no data of the database (the CapabilityStatement, the SMART
	// configuration). It is audited as any request, but leaves when its
	// AuditEvent cannot be written (logged): FHIR clients and load
	// balancers check /fhir/metadata, and a database blip made every
	// replica look down (a PostgreSQL operator's review).
	disclosesNothing bool
	// scope is the gateway scope the caller needs (auth.ScopeIngest,
	// auth.ScopeOperator, auth.ScopeAuditor); FHIR routes check SMART
	// scopes per resource type in the engine instead. auth.ScopeAuditor
	// marks a read of the auditor's API: gateway/operator grants it too
	// (an operator reads what it acts on), while an auditor gets none of
	// the operator's writes (separation of duties).
	scope string
	// public routes need no authentication.
	public bool
	// fhir routes negotiate FHIR JSON (_format, Accept).
	fhir bool
	// head GET routes also answer HEAD (RFC 9110 9.3.2): the GET's
	// status and headers without its body, audited as the GET. Only for
	// GETs without side effects (not a bulk export's kick-off).
	head bool
	// store routes exist only when the gateway has a store.
	store bool
	// console routes are the web console's (Config.Console): it signs
	// people in and audits each page view and action itself, with the
	// interaction of the API call the page stands for, so the edge neither
	// authenticates nor audits them (it passes the request's facts on).
	console bool
	// delivery routes act on one delivery (:id): a caller refused for its
	// scope is audited naming the delivery, its record and patient, as
	// the handler names them for every other answer (nameRefusedDelivery).
	delivery bool
	// params, when not nil, are the only query parameters the route takes
	// (besides _pretty, pretty and _format): any other is 400
	// parameter-invalid naming it (the operator and auditor's API).
	params []string
}

// table is the whole HTTP API on one page.
func (s *Server) table() []route {
	const get, post, put, del, patch = http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch
	return []route{
		// The index: where things are (a browser goes to the console).
		{method: get, path: "/", handle: s.index, exempt: true, public: true, head: true},

		// Health probes.
		{method: get, path: "/healthz", handle: s.healthz, exempt: true, public: true},
		{method: get, path: "/readyz", handle: s.handleReady, exempt: true, public: true, store: true},

		// SMART Backend Services: discovery and the token endpoint.
		{method: get, path: "/.well-known/smart-configuration", handle: s.handleSmartConfiguration, interaction: "smart-config", public: true, disclosesNothing: true},
		{method: get, path: "/fhir/.well-known/smart-configuration", handle: s.handleSmartConfiguration, interaction: "smart-config", public: true, disclosesNothing: true},
		{method: post, path: "/auth/token", handle: s.handleToken, interaction: "login", public: true},

		// Native records: validate, map and store.
		{method: post, path: "/ingest/:kind", handle: s.ingest, interaction: "ingest", scope: auth.ScopeIngest, fhir: true},
		{method: post, path: "/ingest/:kind/$import", handle: s.handleImport, interaction: "bulk-import", scope: auth.ScopeIngest, store: true},

		// Background jobs (bulk export and import, replay; docs/bulk.md):
		// status, cancel or delete, files. Only the client that started a
		// job sees it.
		{method: get, path: "/jobs/:id", handle: s.handleJob, interaction: "job-status", store: true},
		{method: del, path: "/jobs/:id", handle: s.handleCancelJob, interaction: "job-cancel", store: true},
		{method: get, path: "/jobs/:id/files/:n", handle: s.handleJobFile, interaction: "job-download", head: true, store: true},

		// The operator API (docs/operations.md): its reads are the
		// auditor's too (scope auth.ScopeAuditor), its writes the operator's.
		{method: get, path: "/admin/deliveries", handle: s.handleListDeliveries, interaction: "delivery-list", scope: auth.ScopeAuditor, store: true,
			params: []string{"status", "destination", "patient", "source", "kind", "record", "since", "until", "limit", "offset"}},
		{method: get, path: "/admin/deliveries/:id", handle: s.handleShowDelivery, interaction: "delivery-read", scope: auth.ScopeAuditor, store: true, delivery: true,
			params: []string{"payload"}},
		{method: post, path: "/admin/deliveries/:id/retry", handle: s.handleRetryDelivery, interaction: "delivery-retry", scope: auth.ScopeOperator, store: true, delivery: true,
			params: []string{}},
		{method: post, path: "/admin/deliveries/:id/cancel", handle: s.handleCancelDelivery, interaction: "delivery-cancel", scope: auth.ScopeOperator, store: true, delivery: true,
			params: []string{"reason"}},
		{method: post, path: "/admin/deliveries/replay", handle: s.handleReplay, interaction: "delivery-replay", scope: auth.ScopeOperator, store: true,
			params: []string{"destination", "since"}},
		// Mapping replay as a job (docs/mapping.md).
		{method: post, path: "/admin/replay", handle: s.handleReplayJob, interaction: "mapping-replay", scope: auth.ScopeOperator, store: true,
			params: []string{"kind", "since", "tenant", "source", "apply", "reason", "showValues", "downgrade"}},
		// The search index rebuilt as a job (docs/deployment.md).
		{method: post, path: "/admin/reindex", handle: s.handleReindexJob, interaction: "reindex", scope: auth.ScopeOperator, store: true,
			params: []string{"type", "dryRun", "batch"}},
		// The auditor's API (docs/audit.md).
		{method: get, path: "/admin/lineage", handle: s.handleLineage, interaction: "lineage", scope: auth.ScopeAuditor, store: true,
			params: []string{"source", "record", "kind", "resource", "trace"}},
		{method: get, path: "/admin/audit/verify", handle: s.handleVerifyAudit, interaction: "audit-verify", scope: auth.ScopeAuditor, store: true,
			params: []string{"expect", "from"}},
		{method: get, path: "/admin/audit/export", handle: s.handleExportAudit, interaction: "audit-export", scope: auth.ScopeAuditor, store: true,
			params: []string{"since", "until"}},
		// The access review: who may do what (docs/security.md).
		{method: get, path: "/admin/clients", handle: s.handleListClients, interaction: "client-list", scope: auth.ScopeAuditor,
			params: []string{}},

		// The FHIR R4 RESTful API (http.html).
		{method: get, path: "/fhir/metadata", handle: s.handleMetadata, interaction: "capabilities", public: true, fhir: true, head: true, store: true, disclosesNothing: true},
		{method: post, path: "/fhir", handle: s.handleBundle, interaction: "transaction", fhir: true, store: true}, // or batch, as the engine finds
		{method: post, path: "/fhir/", handle: s.handleBundle, interaction: "transaction", fhir: true, store: true},
		{method: get, path: "/fhir/_history", handle: s.handleHistory, interaction: "history-system", fhir: true, head: true, store: true},
		{method: post, path: "/fhir/$validate", handle: s.handleValidate, interaction: "operation", fhir: true, store: true},
		// FHIR Bulk Data export (docs/bulk.md); the status is a job's.
		{method: get, path: "/fhir/$export", handle: s.handleExport(bulk.LevelSystem), interaction: "bulk-export", fhir: true, store: true},
		{method: get, path: "/fhir/Patient/$export", handle: s.handleExport(bulk.LevelPatient), interaction: "bulk-export", fhir: true, store: true},
		{method: get, path: "/fhir/Group/:id/$export", handle: s.handleExport(bulk.LevelGroup), interaction: "bulk-export", fhir: true, store: true},
		{method: get, path: "/fhir/:type", handle: s.handleSearch, interaction: "search-type", fhir: true, head: true, store: true},
		{method: post, path: "/fhir/:type/_search", handle: s.handleSearch, interaction: "search-type", fhir: true, store: true},
		{method: post, path: "/fhir/:type", handle: s.handleCreate, interaction: "create", fhir: true, store: true},
		{method: put, path: "/fhir/:type", handle: s.handleConditionalUpdate, interaction: "update", fhir: true, store: true},
		{method: patch, path: "/fhir/:type", handle: s.handleConditionalPatch, interaction: "patch", fhir: true, store: true},
		{method: post, path: "/fhir/:type/$validate", handle: s.handleValidate, interaction: "operation", fhir: true, store: true},
		{method: get, path: "/fhir/:type/_history", handle: s.handleHistory, interaction: "history-type", fhir: true, head: true, store: true},
		{method: get, path: "/fhir/:type/:id", handle: s.handleRead, interaction: "read", fhir: true, head: true, store: true},
		{method: put, path: "/fhir/:type/:id", handle: s.handleUpdate, interaction: "update", fhir: true, store: true},
		{method: del, path: "/fhir/:type/:id", handle: s.handleDelete, interaction: "delete", fhir: true, store: true},
		{method: patch, path: "/fhir/:type/:id", handle: s.handlePatch, interaction: "patch", fhir: true, store: true},
		{method: get, path: "/fhir/:type/:id/_history", handle: s.handleHistory, interaction: "history-instance", fhir: true, head: true, store: true},
		{method: get, path: "/fhir/:type/:id/$everything", handle: s.handleEverything, interaction: "operation", fhir: true, head: true, store: true},
		{method: post, path: "/fhir/:type/:id/$everything", handle: s.handleEverything, interaction: "operation", fhir: true, store: true},
		{method: post, path: "/fhir/:type/:id/$validate", handle: s.handleValidate, interaction: "operation", fhir: true, store: true},
		{method: get, path: "/fhir/:type/:id/:compartment", handle: s.handleCompartment, interaction: "search-compartment", fhir: true, head: true, store: true},
		{method: get, path: "/fhir/:type/:id/_history/:vid", handle: s.handleVRead, interaction: "vread", fhir: true, head: true, store: true},

		// The web console for people (docs/console.md), audited by itself.
		{method: get, path: "/console", handle: s.handleConsole, console: true, store: true},
		{method: get, path: "/console/*", handle: s.handleConsole, console: true, store: true},
		{method: post, path: "/console/*", handle: s.handleConsole, console: true, store: true},
	}
}

// storeless are the routes a gateway without a store adds: its own
// conformance resources (nothing is audited without a store).
func (s *Server) storeless() []route {
	return []route{{method: http.MethodGet, path: "/fhir/:type/:id", handle: s.readConformance, exempt: true, fhir: true, head: true}}
}

// register installs the route table on echo.
func (s *Server) register() {
	rows := s.table()
	if s.app.Store == nil {
		rows = append(rows, s.storeless()...)
	}
	s.routes = map[string]*route{}
	for i := range rows {
		r := &rows[i]
		if (r.store && s.app.Store == nil) || (r.console && s.cfg.Console == nil) {
			continue
		}
		var mw []echo.MiddlewareFunc
		if r.fhir {
			mw = append(mw, s.fhirFormat)
		}
		if r.delivery {
			mw = append(mw, s.nameRefusedDelivery)
		}
		if r.scope != "" {
			mw = append(mw, requireScope(r.scope))
		}
		if r.params != nil {
			mw = append(mw, onlyParams(r.params))
		}
		s.echo.Add(r.method, r.path, r.handle, mw...)
		s.routes[r.method+" "+r.path] = r
		if r.head {
			h := *r
			h.method = http.MethodHead
			s.echo.Add(h.method, h.path, h.handle, mw...)
			s.routes[h.method+" "+h.path] = &h
		}
	}
}

// routeOf returns the request's row of the route table (nil for a request
// no route matched).
func (s *Server) routeOf(c echo.Context) *route { return s.routes[c.Request().Method+" "+c.Path()] }

// allowed lists the methods the request's route template serves, other
// than the request's own (for the Allow header of a 405 a handler or the
// application answered).
func (s *Server) allowed(c echo.Context) []string {
	var out []string
	for _, r := range s.routes {
		if r.path == c.Path() && r.method != c.Request().Method && !slices.Contains(out, r.method) {
			out = append(out, r.method)
		}
	}
	slices.Sort(out)
	return out
}
