package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/telemetry"
)

// Every request the gateway answers leaves exactly one AuditEvent (IHE
// BALP shaped, see gateway/audit). A request that writes data appends its
// AuditEvent inside the data's transaction, so data never exists without
// its audit; any other request (a read, a search, a failure) appends it in
// a transaction of its own before the response leaves the gateway: the
// response is buffered and, when the audit cannot be written, replaced by
// a 503.

// auditedRoutes maps "METHOD template" of every route to the interaction
// its AuditEvent records; "" exempts a route (health probes, which carry
// no data and are polled every few seconds). TestEveryRouteAudited fails
// for a route missing here.
var auditedRoutes = map[string]string{
	"GET /healthz":                              "",
	"GET /readyz":                               "",
	"POST /ingest/:kind":                        "ingest",
	"GET /admin/deliveries":                     "delivery-list",
	"GET /admin/deliveries/:id":                 "delivery-read",
	"POST /admin/deliveries/:id/retry":          "delivery-retry",
	"POST /admin/deliveries/replay":             "delivery-replay",
	"GET /admin/lineage":                        "lineage",
	"GET /admin/audit/verify":                   "audit-verify",
	"GET /fhir/metadata":                        "capabilities",
	"POST /fhir":                                "transaction", // or batch, set by the handler
	"POST /fhir/":                               "transaction",
	"GET /fhir/_history":                        "history-system",
	"POST /fhir/$validate":                      "operation",
	"GET /fhir/:type":                           "search-type",
	"POST /fhir/:type/_search":                  "search-type",
	"POST /fhir/:type":                          "create",
	"PUT /fhir/:type":                           "update",
	"POST /fhir/:type/$validate":                "operation",
	"GET /fhir/:type/_history":                  "history-type",
	"GET /fhir/:type/:id":                       "read",
	"PUT /fhir/:type/:id":                       "update",
	"DELETE /fhir/:type/:id":                    "delete",
	"PATCH /fhir/:type/:id":                     "patch",
	"GET /fhir/:type/:id/_history":              "history-instance",
	"GET /fhir/:type/:id/_history/:vid":         "vread",
	"POST /auth/token":                          "login",
	"GET /.well-known/smart-configuration":      "smart-config",
	"GET /fhir/.well-known/smart-configuration": "smart-config",
}

// auditKey is the echo context key of the request's *auditScope.
const auditKey = "kg.audit"

// auditScope collects what one request did, for its AuditEvent.
type auditScope struct {
	interaction string
	entities    []audit.Entity
	// covered are the versions a Provenance of this request lists: the
	// AuditEvent names that Provenance instead of each of them.
	covered     map[audit.Entity]bool
	patients    []string
	description string
	clientID    string
	tenant      string
	// committed: the AuditEvent was committed with the request's data.
	committed bool
}

// auditOf returns the request's audit scope; a throwaway one when the
// request is not audited, so handlers never check.
func auditOf(c echo.Context) *auditScope {
	if sc, ok := c.Get(auditKey).(*auditScope); ok {
		return sc
	}
	sc := &auditScope{}
	c.Set(auditKey, sc)
	return sc
}

// touch records resources the request touched (with their versions).
func (sc *auditScope) touch(rs ...*store.Resource) {
	for _, r := range rs {
		sc.touchDoc(r, nil)
	}
}

// touchDoc records one resource; doc is its decoded body when the caller
// has it at hand (nil: the patients are read from r.Body).
func (sc *auditScope) touchDoc(r *store.Resource, doc map[string]any) {
	if r == nil {
		return
	}
	sc.entities = append(sc.entities, audit.Entity{Type: r.Type, ID: r.ID, Version: r.Version})
	switch {
	case r.Deleted:
	case doc != nil:
		sc.patient(patientsOf(r.Type, r.ID, doc)...)
	default:
		sc.patient(patientsIn(r.Type, r.ID, r.Body)...)
	}
}

// patient records patients the request concerned.
func (sc *auditScope) patient(refs ...string) {
	for _, p := range refs {
		if !slices.Contains(sc.patients, p) {
			sc.patients = append(sc.patients, p)
		}
	}
}

// reset forgets what a rolled-back transaction attempt recorded.
func (sc *auditScope) reset() { sc.entities, sc.patients, sc.covered = nil, nil, nil }

// auditRequests is the middleware that guarantees the one AuditEvent.
func (s *Server) auditRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		interaction, known := auditedRoutes[c.Request().Method+" "+c.Path()]
		if s.store == nil || s.noAudit || (known && interaction == "") {
			return next(c)
		}
		if !known {
			interaction = "unknown-endpoint"
		}
		sc := auditOf(c)
		sc.interaction = interaction
		if c.Response().Header().Get(telemetry.RequestIDHeader) == "" {
			c.Response().Header().Set(telemetry.RequestIDHeader, newID())
		}
		res := c.Response()
		buf := &bufferedWriter{ResponseWriter: res.Writer}
		res.Writer = buf
		if err := next(c); err != nil {
			c.Error(err)
		}
		res.Writer = buf.ResponseWriter
		if !sc.committed {
			err := s.audits.append(s, auditTenant(sc), s.auditRecord(c, sc, res.Status))
			if err != nil {
				// The answer must not leave unaudited: replace it.
				s.log.Error("audit write failed", "route", c.Path(), "method", c.Request().Method, "status", res.Status)
				h := buf.Header()
				for _, k := range []string{"ETag", "Last-Modified", "Location", "Content-Length"} {
					h.Del(k)
				}
				h.Set("Content-Type", ContentTypeFHIR)
				h.Set("Retry-After", "5")
				res.Status = http.StatusServiceUnavailable
				buf.ResponseWriter.WriteHeader(http.StatusServiceUnavailable)
				body, _ := json.Marshal(OperationOutcome([]Issue{{Severity: "fatal", Code: "transient", Rule: "audit-unavailable",
					Message: "the request could not be audited and was not answered; retry later"}}))
				_, _ = buf.ResponseWriter.Write(body)
				return nil
			}
		}
		buf.flush()
		return nil
	}
}

// auditRecord builds the request's AuditEvent record.
func (s *Server) auditRecord(c echo.Context, sc *auditScope, status int) audit.Record {
	r := c.Request()
	entities := sc.entities
	if sc.covered != nil {
		entities = make([]audit.Entity, 0, len(sc.entities))
		for _, e := range sc.entities {
			if !sc.covered[e] {
				entities = append(entities, e)
			}
		}
	}
	if len(entities) == 0 && status >= 400 {
		// A failed instance interaction still names its target.
		if typ, id := c.Param("type"), c.Param("id"); typ != "" && id != "" &&
			s.pipeline.validator.KnownType(typ) && validID(id) {
			entities = []audit.Entity{{Type: typ, ID: id}}
		}
	}
	desc := sc.description
	if rules := failureDescription(c); rules != "" {
		desc = rules // the error handler's rule ids; the token endpoint sets its own
	}
	return audit.Record{
		ID: newID(), Recorded: s.now(), Interaction: sc.interaction, Status: status,
		ClientID: sc.clientID, ClientAddr: c.RealIP(), Observer: s.cfg.Instance, Tenant: sc.tenant,
		Patients: sc.patients, Entities: entities,
		RequestID:   c.Response().Header().Get(telemetry.RequestIDHeader),
		TraceID:     telemetry.TraceID(r.Context()),
		Description: desc,
	}
}

// failureKey is the echo context key of the rule ids of a failed request,
// set by the error handler.
const failureKey = "kg.failure"

// failureDescription names the rules a failed request broke: rule ids are
// fixed strings of the gateway, never request content.
func failureDescription(c echo.Context) string {
	rules, _ := c.Get(failureKey).([]string)
	if len(rules) == 0 {
		return ""
	}
	if len(rules) > 5 {
		return fmt.Sprintf("rejected: %s and %d more", strings.Join(rules[:5], ", "), len(rules)-5)
	}
	return "rejected: " + strings.Join(rules, ", ")
}

// appendAudit stores the record as an AuditEvent and appends it to the
// hash chain, inside tx.
func (s *Server) appendAudit(tx store.Tx, rec audit.Record) error {
	doc := audit.Event(rec)
	res, entries, err := s.prepare("AuditEvent", rec.ID, 1, doc, rec.Recorded)
	if err != nil {
		return err
	}
	if err := tx.Put(res, entries); err != nil {
		return fmt.Errorf("store AuditEvent %s: %w", rec.ID, err)
	}
	if _, err := tx.AppendAudit(rec.ID, res.Body); err != nil {
		return fmt.Errorf("chain AuditEvent %s: %w", rec.ID, err)
	}
	return nil
}

// auditTx is tx as the request's AuditEvent is written: in the client's
// tenant (the default tenant for unauthenticated requests and for
// all-tenant operators).
func auditTx(tx store.Tx, sc *auditScope) store.Tx {
	return txFor(tx, auditTenant(sc))
}

// auditTenant is the tenant a request's AuditEvent belongs to.
func auditTenant(sc *auditScope) string {
	if sc.tenant == search.AllTenants {
		return ""
	}
	return sc.tenant
}

// auditBatcher group-commits the AuditEvents of requests that wrote no
// data (reads, searches, failures): concurrent requests share one durable
// transaction instead of paying one commit each, and each still gets its
// answer only after its own record is committed.
type auditBatcher struct {
	once sync.Once
	ch   chan *auditReq
}

type auditReq struct {
	tenant string
	rec    audit.Record
	done   chan error
}

// maxAuditBatch bounds one group commit.
const maxAuditBatch = 256

// append commits rec (in tenant) and returns when it is durable.
func (b *auditBatcher) append(s *Server, tenant string, rec audit.Record) error {
	b.once.Do(func() {
		b.ch = make(chan *auditReq, maxAuditBatch)
		go b.run(s)
	})
	r := &auditReq{tenant: tenant, rec: rec, done: make(chan error, 1)}
	b.ch <- r
	return <-r.done
}

// run commits whatever is queued, as one transaction, for as long as the
// process lives (the goroutine only waits when nothing is queued).
func (b *auditBatcher) run(s *Server) {
	for first := range b.ch {
		batch := []*auditReq{first}
	drain:
		for len(batch) < maxAuditBatch {
			select {
			case r := <-b.ch:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := s.write(ctx, func(tx store.Tx) error {
			for _, r := range batch {
				if err := s.appendAudit(txFor(tx, r.tenant), r.rec); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil && len(batch) > 1 {
			// Find out whose record failed: each alone.
			for _, r := range batch {
				r.done <- s.write(ctx, func(tx store.Tx) error { return s.appendAudit(txFor(tx, r.tenant), r.rec) })
			}
		} else {
			for _, r := range batch {
				r.done <- err
			}
		}
		cancel()
	}
}

// writeAudited runs fn in a retried write transaction and, when fn
// succeeds, appends the request's AuditEvent (with the status fn reports)
// in the same transaction.
func (s *Server) writeAudited(c echo.Context, ctx context.Context, fn func(tx store.Tx) (status int, err error)) error {
	sc := auditOf(c)
	audited := sc.interaction != ""
	tenant := tenantOf(c)
	err := s.write(ctx, func(tx store.Tx) error {
		sc.reset()
		tx = txFor(tx, tenant)
		status, err := fn(tx)
		if err != nil || !audited {
			return err
		}
		return s.appendAudit(auditTx(tx, sc), s.auditRecord(c, sc, status))
	})
	if err == nil && audited {
		sc.committed = true
	}
	return err
}

// patientsIn returns the patients a stored resource is about: itself for a
// Patient, else its subject or patient reference when that is a Patient.
// Only those two members are decoded (this runs for every search match).
func patientsIn(typ, id string, body []byte) []string {
	if typ == "Patient" {
		return []string{"Patient/" + id}
	}
	var refs struct {
		Subject, Patient struct {
			Reference string `json:"reference"`
		}
	}
	_ = json.Unmarshal(body, &refs) // a member of another shape is just not a patient
	return patientRefs(refs.Subject.Reference, refs.Patient.Reference)
}

// patientsOf is patientsIn for a decoded resource.
func patientsOf(typ, id string, doc map[string]any) []string {
	if typ == "Patient" {
		return []string{"Patient/" + id}
	}
	ref := func(k string) string {
		m, _ := doc[k].(map[string]any)
		r, _ := m["reference"].(string)
		return r
	}
	return patientRefs(ref("subject"), ref("patient"))
}

// patientRefs keeps the references to a Patient, without their version.
func patientRefs(refs ...string) []string {
	var out []string
	for _, ref := range refs {
		if !strings.HasPrefix(ref, "Patient/") {
			continue
		}
		if i := strings.Index(ref, "/_history/"); i > 0 {
			ref = ref[:i]
		}
		out = append(out, ref)
	}
	return out
}

// bufferedWriter holds a response until its audit record is committed.
type bufferedWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (b *bufferedWriter) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}

func (b *bufferedWriter) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}

// Flush is a no-op: nothing leaves before the audit commits.
func (b *bufferedWriter) Flush() {}

// Unwrap lets http.ResponseController reach the connection.
func (b *bufferedWriter) Unwrap() http.ResponseWriter { return b.ResponseWriter }

// flush sends the held response.
func (b *bufferedWriter) flush() {
	if b.status == 0 {
		return
	}
	b.ResponseWriter.WriteHeader(b.status)
	_, _ = b.ResponseWriter.Write(b.body.Bytes())
}
