package bulk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// Export levels.
const (
	LevelSystem  = "system"  // GET [base]/$export
	LevelPatient = "patient" // GET [base]/Patient/$export
	LevelGroup   = "group"   // GET [base]/Group/[id]/$export
)

// ExportParams is an $export kick-off request.
type ExportParams struct {
	Level string
	Group string // the Group's id (LevelGroup)
	// Query is the request's query string; Prefer its Prefer header.
	Query  url.Values
	Prefer string
	// Request is the kick-off URL as the client sent it (the manifest
	// repeats it); Base is where the gateway is reached ("https://gw"),
	// for the URLs of the status and the files.
	Request, Base string
}

// exportRequest is what an export job was asked, resolved at kick-off.
type exportRequest struct {
	Level string `json:"level"`
	Group string `json:"group,omitempty"`
	// Members are the Patient ids of the Group, as it was at kick-off.
	Members []string `json:"members,omitempty"`
	// Types are the types to export, in order.
	Types []string `json:"types"`
	// Since keeps resources last updated after it.
	Since time.Time `json:"since,omitzero"`
	// TypeFilters are the _typeFilter queries of each type ("a=b&c=d").
	TypeFilters     map[string][]string `json:"typeFilters,omitempty"`
	Request         string              `json:"request"`
	Base            string              `json:"base"`
	TransactionTime time.Time           `json:"transactionTime"`
	Scopes          string              `json:"scopes"`
}

// Kick-off failures: each says which parameter is wrong and how.
func kickoffError(rule, msg string) *outcome.Error {
	return outcome.New(outcome.Invalid, "invalid", rule, msg)
}

var (
	errNotAsync = kickoffError("export-prefer-respond-async",
		"a bulk export runs asynchronously: send the header Prefer: respond-async")
	errTooMany = &outcome.Error{Kind: outcome.Throttled, RetryAfter: 60, Issues: []outcome.Issue{{Severity: "error",
		Code: "throttled", Rule: "export-too-many", Message: fmt.Sprintf("this client has %d exports queued or running; wait for one to finish or cancel one", maxActiveExports)}}}
)

// The refusals of a _type or _typeFilter value name the parameter and the
// rule, never the value: it may be anything the client typed there (PHI
// pasted into the wrong field), docs/security.md.
var (
	errTypeUnknown = kickoffError("export-type-unknown",
		"a _type value is not a FHIR R4 resource type: _type is a comma-separated list of resource types").At("_type")
	errTypeFilterForm = kickoffError("export-typefilter-invalid",
		"each _typeFilter is a resource type, '?' and search parameters").At("_typeFilter")
	errTypeFilterNotExported = kickoffError("export-typefilter-invalid",
		"a _typeFilter's resource type is not one exported: name a type of _type (or, without _type, one the "+
			"access token's scopes let the client read)").At("_typeFilter")
)

// maxActiveExports bounds the exports one client has queued or running.
const maxActiveExports = 3

// Export checks an $export kick-off and submits its job: the job, whose
// status is polled at Base/jobs/{id}. Bad parameters are Invalid errors
// naming them; types the caller's scopes do not cover are Forbidden; a
// Group that does not exist (or is another tenant's) is NotFound; a
// client with too many exports running is Throttled.
func (s *Service) Export(ctx context.Context, sc *auditlog.Scope, p ExportParams) (*store.Job, error) {
	if sc.Principal == nil {
		return nil, &auth.Failure{Status: 401, Reason: "unauthenticated", Description: "authentication required"}
	}
	if !prefers(p.Prefer, "respond-async") {
		return nil, errNotAsync
	}
	req, err := s.exportRequest(ctx, sc, p)
	if err != nil {
		return nil, err
	}
	active, err := s.cfg.Jobs.List(ctx, store.JobFilter{Kind: KindExport, Tenant: sc.TenantOf(), Owner: sc.ClientID, Limit: 1000})
	if err != nil {
		return nil, err
	}
	n := 0
	for _, j := range active {
		if j.Status == store.JobQueued || j.Status == store.JobRunning {
			n++
		}
	}
	if n >= maxActiveExports {
		return nil, errTooMany
	}
	raw, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	j, err := s.cfg.Jobs.Submit(ctx, sc, KindExport, raw, false)
	if err != nil {
		return nil, err
	}
	sc.Description = fmt.Sprintf("bulk export kick-off (%s level, %d types): job %s", req.Level, len(req.Types), j.ID)
	return j, nil
}

// prefers reports whether a Prefer header holds the preference pref
// ("respond-async", "handling=lenient"), in any case, spaces ignored.
func prefers(prefer, pref string) bool {
	for _, part := range strings.Split(prefer, ",") {
		if strings.EqualFold(strings.ReplaceAll(strings.TrimSpace(part), " ", ""), pref) {
			return true
		}
	}
	return false
}

// exportRequest reads and checks the kick-off's parameters.
func (s *Service) exportRequest(ctx context.Context, sc *auditlog.Scope, p ExportParams) (*exportRequest, error) {
	now := s.cfg.Now().UTC().Truncate(time.Millisecond)
	req := &exportRequest{Level: p.Level, Request: p.Request, Base: p.Base, TransactionTime: now, Scopes: sc.Principal.Scopes.String()}
	for name := range p.Query {
		switch name {
		case "_outputFormat", "_type", "_since", "_typeFilter", "_format", "_pretty":
		default:
			if !prefers(p.Prefer, "handling=lenient") {
				// The name is not quoted: the gateway does not know it, and
				// a name a client made up may be a value typed in its place.
				return nil, kickoffError("export-parameter-unsupported", "a parameter of the request is not supported by "+
					"this server's $export, which takes _outputFormat, _type, _since and _typeFilter (send Prefer: "+
					"handling=lenient to have the others ignored)")
			}
		}
	}
	switch f := p.Query.Get("_outputFormat"); f {
	case "", "application/fhir+ndjson", "application/ndjson", "ndjson":
	default:
		return nil, kickoffError("export-format-unsupported",
			"_outputFormat must be application/fhir+ndjson (or application/ndjson, ndjson): the only format served")
	}
	if v := p.Query.Get("_since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		switch {
		case err != nil:
			return nil, kickoffError("export-since-invalid", "_since must be a FHIR instant with a time zone, such as 2026-01-31T00:00:00Z")
		case t.After(now):
			return nil, kickoffError("export-since-future", "_since is in the future: no resource can have changed after it")
		}
		req.Since = t.UTC()
	}
	compartment := p.Level != LevelSystem
	var explicit []string
	for _, v := range p.Query["_type"] {
		for _, typ := range strings.Split(v, ",") {
			typ = strings.TrimSpace(typ)
			switch {
			case typ == "":
				continue
			case !s.cfg.Engine.KnownType(typ) || typ == "Parameters":
				return nil, errTypeUnknown // the value is not quoted: it may be anything, a name
			case compartment && !inCompartment(typ):
				return nil, kickoffError("export-type-not-in-compartment", "_type names "+quoted(typ)+
					", which has no reference to a Patient: a Patient or Group export has only Patients and the resources about them").At("_type")
			}
			if !allowedType(sc, typ) {
				return nil, auth.InsufficientScope(sc.ClientID, "system/"+typ+".rs")
			}
			if !slices.Contains(explicit, typ) {
				explicit = append(explicit, typ)
			}
		}
	}
	if explicit != nil {
		req.Types = explicit
	} else {
		for _, typ := range search.Types() {
			if (!compartment || inCompartment(typ)) && allowedType(sc, typ) {
				req.Types = append(req.Types, typ)
			}
		}
		if len(req.Types) == 0 {
			return nil, auth.InsufficientScope(sc.ClientID, "system/*.rs")
		}
	}
	if err := req.typeFilters(sc, p.Query["_typeFilter"]); err != nil {
		return nil, err
	}
	if p.Level == LevelGroup {
		members, err := s.groupMembers(ctx, sc, p.Group)
		if err != nil {
			return nil, err
		}
		req.Group, req.Members = p.Group, members
	}
	return req, nil
}

// typeFilters reads _typeFilter values ("Type?query", comma-separated or
// repeated): each must name an exported type and be a search the store
// can run on it, without result parameters, that the caller of sc may run:
// a _has looks into another type, which needs read or search on it, as the
// same search does (engine.AllowLinked; 403 insufficient_scope otherwise).
func (r *exportRequest) typeFilters(sc *auditlog.Scope, values []string) error {
	for _, v := range values {
		for _, f := range splitFilters(v) {
			typ, query, ok := strings.Cut(f, "?")
			if !ok || typ == "" || query == "" {
				return errTypeFilterForm
			}
			if !slices.Contains(r.Types, typ) {
				// The type is not quoted: it may be anything the client
				// typed there (a name, if it pasted into the wrong field).
				return errTypeFilterNotExported
			}
			q, err := parseFilter(typ, query)
			if err != nil {
				return err
			}
			if err := engine.AllowLinked(sc, q); err != nil {
				return err
			}
			if r.TypeFilters == nil {
				r.TypeFilters = map[string][]string{}
			}
			r.TypeFilters[typ] = append(r.TypeFilters[typ], query)
		}
	}
	return nil
}

// splitFilters splits a _typeFilter value at the commas between filters
// (a comma inside a filter's values is escaped by the client, as %2C).
func splitFilters(v string) []string {
	var out []string
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// parseFilter parses one _typeFilter query on typ.
func parseFilter(typ, query string) (*search.Query, error) {
	vals, err := search.ParseQuery(typ, query)
	if err != nil {
		return nil, kickoffError("export-typefilter-invalid", "a _typeFilter's search parameters are not a valid query string "+
			"(percent-encoded UTF-8)").At("_typeFilter")
	}
	q, err := search.Parse(typ, vals, false)
	if err != nil {
		msg := "a _typeFilter is not a valid search of " + typ
		var se *search.Error
		if errors.As(err, &se) {
			msg += ": " + se.Message
		}
		return nil, kickoffError("export-typefilter-invalid", msg).At("_typeFilter")
	}
	if len(q.Includes) > 0 || len(q.RevIncludes) > 0 || len(q.Sort) > 0 || q.SummaryCount {
		return nil, kickoffError("export-typefilter-invalid", "a _typeFilter selects resources: _include, _revinclude, _sort and _summary have no place in it").At("_typeFilter")
	}
	for _, c := range q.Clauses {
		if c.Chain != nil {
			return nil, kickoffError("export-typefilter-invalid", "chained parameters are not supported in a _typeFilter").At("_typeFilter")
		}
	}
	return q, nil
}

// inCompartment reports whether typ belongs to a Patient or Group export:
// the Patient, and every type with a search parameter for its Patient
// (compartmentParam).
func inCompartment(typ string) bool {
	return typ == "Patient" || compartmentParam(typ) != ""
}

// compartmentParam is the reference search parameter that ties a resource
// of typ to its Patient: patient (for most types the gateway's "any
// reference to a Patient"), else subject when it may name a Patient
// (AdverseEvent); "" when there is none.
func compartmentParam(typ string) string {
	if _, ok := search.Lookup(typ, "patient"); ok {
		return "patient"
	}
	if p, ok := search.Lookup(typ, "subject"); ok && slices.Contains(p.Targets, "Patient") {
		return "subject"
	}
	return ""
}

// allowedType reports whether the caller's scopes let it read typ.
func allowedType(sc *auditlog.Scope, typ string) bool {
	p := sc.Principal
	return p != nil && (p.Scopes.Allows(typ, 'r') || p.Scopes.Allows(typ, 's'))
}

// quoted quotes a resource type the gateway knows for a message (never a
// value it does not know: that may be anything, PHI typed in the wrong
// place): short, printable, so that nothing else of the request is
// repeated.
func quoted(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return fmt.Sprintf("%q", s)
}
