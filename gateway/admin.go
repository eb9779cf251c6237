package gateway

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/operator"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// The operator API (JSON, docs/operations.md) and the auditor's API
// (docs/audit.md): thin translations onto the operator service and the
// audit log.

func (s *Server) handleListDeliveries(c echo.Context) error {
	f := store.DeliveryFilter{Status: c.QueryParam("status"), Destination: c.QueryParam("destination"),
		Patient: c.QueryParam("patient"), Source: c.QueryParam("source"), Kind: c.QueryParam("kind"), RecordID: c.QueryParam("record")}
	var err error
	if f.Since, err = timeParam(c, "since"); err != nil {
		return err
	}
	if f.Until, err = timeParam(c, "until"); err != nil {
		return err
	}
	if f.Limit, err = countParam(c, "limit"); err != nil {
		return err
	}
	if f.Offset, err = intParam(c, "offset"); err != nil {
		return err
	}
	sc := scopeOf(c)
	out, err := s.app.Operator.List(c.Request().Context(), sc.TenantOf(), f)
	if err != nil {
		return err
	}
	if err := auditlog.NameDeliveryList(c.Request().Context(), s.app.Store, sc, s.app.IdentifierBase, sc.TenantOf(), f, out); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"deliveries": out})
}

// nameRefusedDelivery names, in the AuditEvent of a request about one
// delivery (:id) that the caller's scopes refused, the delivery, its
// record and patient, as the handler names them for every other answer
// ("who tried to act on this delivery" finds a clinic's client trying an
// operator's retry). The delivery is looked up in the caller's tenant
// only: another tenant's is named by nothing (as the handler's 404).
func (s *Server) nameRefusedDelivery(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		err := next(c)
		if k, _ := outcome.From(err); err == nil || k != outcome.Forbidden {
			return err
		}
		ctx, sc := c.Request().Context(), scopeOf(c)
		if v, serr := s.app.Operator.Show(ctx, sc.TenantOf(), c.Param("id"), false); serr == nil {
			if nerr := auditlog.NameDelivery(ctx, s.app.Store, sc, s.app.IdentifierBase, v, auditlog.ShownSummary); nerr != nil {
				return nerr
			}
			sc.Description = fmt.Sprintf("delivery %s: refused, nothing shown or done", v.ID)
		}
		return err
	}
}

// handleShowDelivery is GET /admin/deliveries/:id, the delivery's public
// id (the operator service refuses any other as no delivery).
func (s *Server) handleShowDelivery(c echo.Context) error {
	id := c.Param("id")
	payload, err := boolParam(c, "payload")
	if err != nil {
		return err
	}
	sc := scopeOf(c)
	v, err := s.app.Operator.Show(c.Request().Context(), sc.TenantOf(), id, payload)
	if err != nil {
		return err
	}
	shown := auditlog.ShownSummary
	if payload {
		shown = auditlog.ShownPayload
	}
	if err := auditlog.NameDelivery(c.Request().Context(), s.app.Store, sc, s.app.IdentifierBase, v, shown); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

func (s *Server) handleRetryDelivery(c echo.Context) error {
	id := c.Param("id")
	ctx, sc := c.Request().Context(), scopeOf(c)
	// Its AuditEvent names what a read of it names (the delivery, the
	// record, its patient), refused or not.
	v, err := s.app.Operator.Show(ctx, sc.TenantOf(), id, false)
	if err != nil {
		return err
	}
	if err := auditlog.NameDelivery(ctx, s.app.Store, sc, s.app.IdentifierBase, v, auditlog.ShownSummary); err != nil {
		return err
	}
	waitingFor, err := s.app.Operator.Retry(ctx, sc.TenantOf(), id)
	if err != nil {
		return err
	}
	sc.Description = fmt.Sprintf("delivery %s queued again", v.ID)
	answer := map[string]any{"id": v.ID, "status": store.StatusPending}
	if waitingFor != "" {
		sc.Description += "; it waits for delivery " + waitingFor
		answer["waitingFor"] = waitingFor
		answer["message"] = operator.WaitingMessage(waitingFor)
	}
	return c.JSON(http.StatusOK, answer)
}

// handleCancelDelivery is POST /admin/deliveries/:id/cancel with a reason
// in a form body (reason=...), or in the query string.
func (s *Server) handleCancelDelivery(c echo.Context) error {
	// In the body it stays out of the access logs of proxies in front of
	// the gateway: an operator's reason may name the patient.
	id, reason := c.Param("id"), c.FormValue("reason")
	ctx, sc := c.Request().Context(), scopeOf(c)
	if err := operator.CheckCancelReason(reason); err != nil {
		return err
	}
	// Its AuditEvent names what a read of it names, refused or not.
	v, err := s.app.Operator.Show(ctx, sc.TenantOf(), id, false)
	if err != nil {
		return err
	}
	if err := auditlog.NameDelivery(ctx, s.app.Store, sc, s.app.IdentifierBase, v, auditlog.ShownSummary); err != nil {
		return err
	}
	last, err := s.app.Operator.Cancel(ctx, sc.TenantOf(), id, reason)
	if err != nil {
		return err
	}
	// The reason is the operator's free text: it stays with the delivery
	// (its lastError, which a delivery read shows), not in the AuditEvent.
	sc.Description = fmt.Sprintf("delivery %s cancelled (the reason is recorded with the delivery)", v.ID)
	return c.JSON(http.StatusOK, map[string]any{"id": v.ID, "status": store.StatusDead, "lastError": last})
}

func (s *Server) handleReplay(c echo.Context) error {
	dest := c.QueryParam("destination")
	since, err := timeParam(c, "since")
	if err != nil {
		return err
	}
	n, err := s.app.Operator.Replay(c.Request().Context(), scopeOf(c).TenantOf(), dest, since)
	if err != nil {
		return err
	}
	scopeOf(c).Description = "delivery replay: " + auditlog.CountedAs(n, "delivery", "deliveries") + " queued again"
	return c.JSON(http.StatusOK, map[string]any{"destination": dest, "since": since, "replayed": n})
}

// handleReady is the readiness probe: the database answers and could take
// a write (not locked by another process, no lock held on the tables a
// request writes), all within operator.ProbeTimeout, and the delivery
// backlog and oldest pending age per destination, the store's pool
// (connections in use, waits, write queue), and what the capability
// check found wrong with the destinations (no reason to be unready: the
// gateway still takes and stores records). It always answers its
// JSON (503 "unavailable" when not ready, whatever failed). The backlog
// figures go only to whom may see every tenant's deliveries
// (readyFigures): per destination they count a clinic's records.
func (s *Server) handleReady(c echo.Context) error {
	r, err := s.app.Operator.Ready(c.Request().Context())
	if err != nil {
		// Not the database's trouble as the probe knows it: still the
		// readiness answer, with the failure logged by class.
		s.log.ErrorContext(c.Request().Context(), "readiness check failed", "error_class", store.ErrorClass(err))
		r = operator.Readiness{Database: "unavailable"}
	}
	if !r.Ready {
		c.Response().Header().Set("Retry-After", "5")
		return c.JSON(http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "database": r.Database})
	}
	if !s.readyFigures(c) {
		return c.JSON(http.StatusOK, map[string]any{"status": "ready", "database": r.Database})
	}
	out := map[string]any{"status": "ready", "database": r.Database, "deliveries": r.Backlog}
	if r.CapabilityGaps != nil {
		// What the delivery worker's capability check found wrong with
		// the destinations (docs/operations.md): a warning, still ready.
		out["capabilityGaps"] = r.CapabilityGaps
	}
	if sr, ok := s.app.Store.(store.StatsReporter); ok {
		// The connections and the write queue, to triage a slow gateway
		// (read without a query; the full set is in the metrics).
		p := sr.PoolStats()
		out["pool"] = readyPool{InUse: p.InUse, Max: p.Max, Waits: p.Waits, WriteQueue: p.WriteQueue, WriteQueueMax: p.WriteQueueMax}
	}
	if s.app.Settings != nil {
		// The other live gateways on the database whose settings differ
		// from this one's, by group (docs/deployment.md): never values.
		out["settingsDiffer"] = s.app.Settings.Differences()
	}
	return c.JSON(http.StatusOK, out)
}

// readyPool is /readyz's "pool": connections in use of the most the pool
// opens, the acquires that waited for one since start, and the writes
// waiting for a write lane of the most that may wait (then 503 store-busy).
type readyPool struct {
	InUse         int64 `json:"inUse"`
	Max           int64 `json:"max"`
	Waits         int64 `json:"waits"`
	WriteQueue    int64 `json:"writeQueue"`
	WriteQueueMax int64 `json:"writeQueueMax"`
}

// readyFigures reports whether /readyz's caller may see the delivery
// backlog per destination: anyone in development mode (no clients
// configured); otherwise only a caller whose access token has
// gateway/operator for every tenant (a destination's figures count every
// tenant's records sent to it, so a clinic's operator sees its own on
// /admin/deliveries instead). A missing or invalid token is not refused:
// the probe answers status and database to anyone.
func (s *Server) readyFigures(c echo.Context) bool {
	if s.cfg.Auth == nil {
		return true
	}
	h := c.Request().Header.Get("Authorization")
	if h == "" {
		return false
	}
	p, fail := s.cfg.Auth.Authenticate(c.Request().Context(), h)
	return fail == nil && p.Tenant == search.AllTenants && p.Scopes.Has(auth.ScopeOperator)
}

// handleLineage is GET /admin/lineage?source=&record=[&kind=] |
// ?resource=Type/id | ?trace=<trace id>.
func (s *Server) handleLineage(c echo.Context) error {
	sc := scopeOf(c)
	q := auditlog.LineageQuery{Source: c.QueryParam("source"), Kind: c.QueryParam("kind"), RecordID: c.QueryParam("record"),
		Resource: c.QueryParam("resource"), TraceID: c.QueryParam("trace"), IdentifierBase: s.app.IdentifierBase,
		Tenant: sc.TenantOf()}
	l, err := auditlog.BuildLineage(c.Request().Context(), s.app.Store, q)
	if err != nil {
		return err
	}
	l.Audit(sc)
	sc.Description = l.Describe("lineage")
	return c.JSON(http.StatusOK, l)
}

// liftWriteDeadline lifts the server's write deadline for the request w
// answers: its work grows with the database (the audit chain's walk, about
// 1 ms an AuditEvent), and serve's write timeout (120 s: some 110,000
// AuditEvents, p32 F4) would otherwise cut its answer off. A client that
// gives up still ends it: the request's context ends when its connection
// closes. (A writer that cannot set deadlines, as in tests, has none.)
func liftWriteDeadline(w http.ResponseWriter) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
}

// handleVerifyAudit is GET /admin/audit/verify[?expect=SEQ:HASH...][&from=SEQ:HASH]:
// the whole chain, or from a trusted earlier head (auditlog.VerifyOptions).
func (s *Server) handleVerifyAudit(c echo.Context) error {
	sc := scopeOf(c)
	if t := sc.TenantOf(); t != "" && t != search.AllTenants {
		// The chain spans every tenant: its length alone tells of others' activity.
		return outcome.New(outcome.Forbidden, "forbidden", "tenant-audit-verify", "verifying the audit chain needs an all-tenant auditor or operator")
	}
	var anchors []auditlog.Anchor
	for _, v := range c.QueryParams()["expect"] {
		a, err := auditlog.ParseAnchor(v)
		if err != nil {
			return paramInvalid("expect: " + err.Error())
		}
		anchors = append(anchors, a)
	}
	opts := auditlog.VerifyOptions{Anchors: anchors}
	switch from := c.QueryParams()["from"]; len(from) {
	case 0:
	case 1:
		a, err := auditlog.ParseAnchor(from[0])
		if err != nil {
			return outcome.New(outcome.Invalid, "invalid", "parameter-invalid", "from: "+err.Error()).At("from")
		}
		opts.From = &a
	default:
		return outcome.New(outcome.Invalid, "invalid", "parameter-invalid", "from: given once").At("from")
	}
	liftWriteDeadline(c.Response())
	res, err := auditlog.VerifyWith(c.Request().Context(), s.app.Store, time.Now(), opts)
	if err != nil {
		return err
	}
	sc.Description = res.Describe()
	return c.JSON(http.StatusOK, res)
}

// handleExportAudit is GET /admin/audit/export?since=&until=: the audit
// chain's slice for the period as NDJSON with its links and a manifest
// (auditlog.Export), for a reviewer who checks it without the database
// (audit verify-export). The chain spans every tenant (a tenant's shares
// of all-tenant requests are chained and exported as any AuditEvent), so
// only an all-tenant caller exports it.
func (s *Server) handleExportAudit(c echo.Context) error {
	sc := scopeOf(c)
	if t := sc.TenantOf(); t != "" && t != search.AllTenants {
		return outcome.New(outcome.Forbidden, "forbidden", "tenant-audit-export", "exporting the audit chain needs an all-tenant auditor or operator")
	}
	since, err := timeParam(c, "since")
	if err != nil {
		return err
	}
	until, err := timeParam(c, "until")
	if err != nil {
		return err
	}
	if !since.IsZero() && !until.IsZero() && !until.After(since) {
		return paramInvalid("until must be after since")
	}
	now := time.Now()
	if from := auditlog.ExportableFrom(until); !until.IsZero() && now.Before(from) {
		return outcome.New(outcome.Invalid, "invalid", "audit-export-period-open",
			"until has not passed by the commit slack: records made before it may still be chained; the period can be exported from "+
				from.UTC().Format(time.RFC3339)).At("until")
	}
	liftWriteDeadline(c.Response())
	c.Response().Header().Set(echo.HeaderContentType, "application/x-ndjson")
	c.Response().WriteHeader(http.StatusOK)
	m, err := auditlog.ExportNaming(c.Request().Context(), s.app.Store, sc, since, until, now, c.Response())
	if err != nil {
		// The answer has begun: it ends without its manifest, which
		// verify-export reports as cut off.
		sc.Description = "audit export cut off: the chain could not be read"
		return err
	}
	sc.Description = fmt.Sprintf("audit export: %d records (%d to %d), head %d", m.Records, m.FirstSeq, m.LastSeq, m.HeadSeq)
	return nil
}

// handleListClients is GET /admin/clients: the registered clients (id,
// tenant, scopes, key ids; never keys) for an access review; a clinic's
// caller sees its clinic's clients, an all-tenant one every client and
// the external issuers. In development mode (no clients) the lists are
// empty.
func (s *Server) handleListClients(c echo.Context) error {
	sc := scopeOf(c)
	out := struct {
		Clients []auth.Registration       `json:"clients"`
		Issuers []auth.IssuerRegistration `json:"issuers"`
	}{[]auth.Registration{}, []auth.IssuerRegistration{}}
	if s.cfg.Auth != nil {
		clients, issuers := s.cfg.Auth.Registrations()
		t := sc.TenantOf()
		for _, r := range clients {
			if t == search.AllTenants || r.Tenant == t {
				out.Clients = append(out.Clients, r)
			}
		}
		if t == search.AllTenants {
			out.Issuers = issuers
		}
	}
	sc.Description = fmt.Sprintf("%d clients, %d external issuers listed", len(out.Clients), len(out.Issuers))
	return c.JSON(http.StatusOK, out)
}

// timeParam reads the time query parameter name of an admin route as the
// CLI reads its time flags (operator.ParseTime); zero when it is absent.
func timeParam(c echo.Context, name string) (time.Time, error) {
	v := c.QueryParam(name)
	if v == "" {
		return time.Time{}, nil
	}
	// As the CLI's time flags (deliveries list --since 7d): the same
	// period over HTTP was refused (p45 F3, an operator's review).
	if t, ok := operator.ParseTime(v, time.Now()); ok {
		return t, nil
	}
	if search.PlusAsSpace(v) {
		return time.Time{}, paramInvalid(name + " holds a space where its time zone's + was: " + search.PlusAdvice)
	}
	return time.Time{}, paramInvalid(name + " must be " + operator.TimeHelp)
}

// countParam reads a count parameter whose range the application checks
// (a limit, a batch size): 0 when it is absent (the default), -1 for a
// value below 1, which the application refuses naming the range.
func countParam(c echo.Context, name string) (int, error) {
	v := c.QueryParam(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, paramInvalid(name + " must be a whole number")
	}
	if n < 1 {
		return -1, nil
	}
	return n, nil
}

// onlyParams refuses a request with a query parameter the route does not
// take (a misspelt one would otherwise be ignored), or one given twice, by
// the rule of every endpoint (queryParams: a made-up name is not repeated).
// The response-format parameters are taken everywhere.
func onlyParams(names []string) echo.MiddlewareFunc {
	known := append(slices.Clip(names), "_pretty", "pretty", "_format")
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if err := queryParams(c, known...); err != nil {
				return err
			}
			return next(c)
		}
	}
}

func intParam(c echo.Context, name string) (int, error) {
	v := c.QueryParam(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, paramInvalid(name + " must be a non-negative integer")
	}
	return n, nil
}

// handleConsole serves the web console (GET and POST /console/...); the
// console signs people in and audits each page itself.
func (s *Server) handleConsole(c echo.Context) error {
	s.cfg.Console.ServeHTTP(c.Response(), c.Request())
	return nil
}
