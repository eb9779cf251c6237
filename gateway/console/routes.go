package console

import "net/http"

// routes is the whole console on one page: pattern, what it is audited
// as ("" for pages that show only the console itself or the sign-in), and
// the role it needs.
func (c *Console) routes() {
	c.mux = http.NewServeMux()
	c.mux.HandleFunc("GET "+Prefix+"/static/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		c.static.ServeHTTP(w, r)
	})
	c.mux.HandleFunc("GET "+Prefix, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix+"/", http.StatusMovedPermanently)
	})
	c.handle("GET "+Prefix+"/{$}", "", anyone, c.home)
	c.handle("GET "+Prefix+"/rules", "", anyone, c.rules)
	c.handle("GET "+Prefix+"/conformance", "", anyone, c.conformancePage)

	// Signing in and out.
	c.handle("GET "+Prefix+"/login", "", public, c.login)
	c.handle("GET "+Prefix+"/login/start", "", public, c.loginStart)
	c.handle("GET "+Prefix+"/callback", "login", public, c.callback)
	c.handle("POST "+Prefix+"/logout", "logout", anyone, c.logout)

	// The auditor's pages.
	c.handle("GET "+Prefix+"/audit", "search-type", auditorRole, c.auditSearch)
	c.handle("POST "+Prefix+"/audit", "search-type", auditorRole, c.auditSearchSubmit)
	c.handle("POST "+Prefix+"/audit/export", "search-type", auditorRole, c.auditExport)
	c.handle("GET "+Prefix+"/audit/events/{id}", "lineage", auditorRole, c.requestPage)
	c.handle("GET "+Prefix+"/records", "lineage", auditorRole, c.recordPage)
	// A resource's versions, read as GET /fhir/{type}/{id}/_history is.
	c.handle("GET "+Prefix+"/resources/{type}/{id}", "history-instance", auditorRole, c.resourcePage)
	c.handle("GET "+Prefix+"/audit/chain", "", auditorRole, c.chainPage)
	c.handle("POST "+Prefix+"/audit/chain", "audit-verify", auditorRole, c.chainVerify)

	// The operator's pages.
	c.handle("GET "+Prefix+"/deliveries", "delivery-list", operatorRole, c.deliveries)
	c.handle("GET "+Prefix+"/deliveries/{id}", "delivery-read", operatorRole, c.delivery)
	c.handle("GET "+Prefix+"/deliveries/{id}/retry", "delivery-read", operatorRole, c.retryConfirm)
	c.handleNaming("POST "+Prefix+"/deliveries/{id}/retry", "delivery-retry", operatorRole, c.retry, c.nameDelivery)
	c.handle("POST "+Prefix+"/replay", "delivery-replay", operatorRole, c.replay)
	c.handle("GET "+Prefix+"/replays", "job-status", operatorRole, c.replays)
	c.handle("POST "+Prefix+"/replays", "mapping-replay", operatorRole, c.replayStart)
	c.handle("GET "+Prefix+"/replays/{id}", "job-status", operatorRole, c.replayJob)

	// The mapping developer's pages (no store: dry runs, audited like
	// POST /ingest/{kind}?dryRun=true).
	c.handle("GET "+Prefix+"/playground", "", anyone, c.playground)
	c.handle("POST "+Prefix+"/playground", "ingest", anyone, c.playgroundMap)
	c.handle("GET "+Prefix+"/playground/diff", "", anyone, c.diffForm)
	c.handle("POST "+Prefix+"/playground/diff", "ingest", anyone, c.diffMap)

	c.handle(Prefix+"/", "unknown-endpoint", public, c.notFound)
}
