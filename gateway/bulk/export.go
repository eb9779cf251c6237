package bulk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/jobs"
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
	// NoToken tells that the gateway takes no access tokens (development
	// mode): the manifest's requiresAccessToken is then false.
	NoToken bool
}

// exportRequest is what an export job was asked, resolved at kick-off.
type exportRequest struct {
	Level string `json:"level"`
	Group string `json:"group,omitempty"`
	// Members are the Patient ids of the Group, as it was at kick-off.
	Members []string `json:"members,omitempty"`
	// GroupTenant is the Group's tenant, whose resources an all-tenant
	// client's Group export reads (a patient's chart is its tenant's).
	GroupTenant string `json:"groupTenant,omitempty"`
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
	// Ignored are the parameters Prefer: handling=lenient ignored (the
	// manifest's error file names them).
	Ignored []string `json:"ignored,omitempty"`
	// NoToken: the files are served without an access token (development
	// mode).
	NoToken bool `json:"noToken,omitempty"`
}

// Kick-off failures: each says which parameter is wrong and how.
func kickoffError(rule, msg string) *outcome.Error {
	return outcome.New(outcome.Invalid, "invalid", rule, msg)
}

var (
	errNotAsync = kickoffError("export-prefer-respond-async",
		"a bulk export runs asynchronously: send the header Prefer: respond-async")
	errTooMany = &outcome.Error{Kind: outcome.Throttled, RetryAfter: 60, Issues: []outcome.Issue{{Severity: "error",
		Code: "throttled", Rule: "export-too-many", Message: fmt.Sprintf("this client has %d exports queued or running; wait for one to finish or cancel one", jobs.MaxActive)}}}
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
	// Checked before the transaction time's wait for the writes in
	// flight, and by Submit again.
	if err := s.cfg.Jobs.CheckActive(ctx, sc, KindExport); err != nil {
		if jobs.TooMany(err) {
			return nil, errTooMany
		}
		return nil, err
	}
	// After every write stamped at or before it has committed, before
	// every write stamped later (engine.TransactionTime): this export and
	// the next one _since it miss nothing between them.
	if req.TransactionTime, err = s.cfg.Engine.TransactionTime(ctx); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	j, err := s.cfg.Jobs.Submit(ctx, sc, KindExport, raw, false)
	if jobs.TooMany(err) {
		return nil, errTooMany
	}
	if err != nil {
		return nil, err
	}
	sc.Description = fmt.Sprintf("bulk export kick-off (%s level, %d types): job %s", req.Level, len(req.Types), j.ID)
	return j, nil
}

// prefers reports whether a Prefer header holds the preference pref
// ("respond-async", "handling=lenient"), in any case, spaces ignored.
// Preferences are separated by commas; a semicolon, which RFC 7240 uses
// for a preference's parameters, separates them too ("respond-async;
// handling=lenient", as HAPI FHIR reads it), so that such a header is not
// refused for lacking the respond-async it starts with.
func prefers(prefer, pref string) bool {
	for _, part := range strings.FieldsFunc(prefer, func(r rune) bool { return r == ',' || r == ';' }) {
		if strings.EqualFold(strings.ReplaceAll(strings.TrimSpace(part), " ", ""), pref) {
			return true
		}
	}
	return false
}

// The $export kick-off's parameters. taken are those the gateway applies
// (and _format, _pretty, which every FHIR interaction takes). lenient are
// the Bulk Data parameters that Prefer: handling=lenient ignores, because
// ignoring them cannot make the export hold more than was asked (they
// shape the manifest or the files' organisation, not what is exported);
// the manifest's error file names them. Every other parameter is refused,
// lenient or not: the Bulk Data ones the gateway does not implement
// (patient, _elements, includeAssociatedData, _until) narrow or select
// what is exported, so ignoring them would disclose more than the client
// asked for, and an unknown name may be one of those misspelt.
var (
	takenParams   = []string{"_outputFormat", "_type", "_since", "_typeFilter", "_format", "_pretty"}
	lenientParams = []string{"allowPartialManifests", "organizeOutputBy"}
	// narrowingParams are the Bulk Data parameters, not implemented, that
	// are named when refused (the gateway knows them: naming them repeats
	// nothing the client typed but the parameter's name).
	narrowingParams = []string{"patient", "_elements", "includeAssociatedData", "_until"}
)

// exportRequest reads and checks the kick-off's parameters.
func (s *Service) exportRequest(ctx context.Context, sc *auditlog.Scope, p ExportParams) (*exportRequest, error) {
	// The engine's clock, for _since (Export takes the transactionTime
	// once the request is accepted).
	now := s.cfg.Engine.Now()
	req := &exportRequest{Level: p.Level, Request: p.Request, Base: p.Base, Scopes: sc.Principal.Scopes.String(),
		NoToken: p.NoToken}
	lenient := prefers(p.Prefer, "handling=lenient")
	for _, name := range slices.Sorted(maps.Keys(p.Query)) {
		switch {
		case slices.Contains(takenParams, name):
		case lenient && slices.Contains(lenientParams, name):
			req.Ignored = append(req.Ignored, name)
		case slices.Contains(narrowingParams, name):
			return nil, kickoffError("export-parameter-unsupported", "the parameter "+name+" is not supported by this "+
				"server's $export; it narrows what is exported, so it is refused also with Prefer: handling=lenient "+
				"(ignoring it would export more than asked): leave it out, or narrow with _type, _typeFilter and a "+
				"Group export").At(name)
		case lenient:
			// The name is not quoted: the gateway does not know it, and
			// a name a client made up may be a value typed in its place.
			return nil, kickoffError("export-parameter-unsupported", "a parameter of the request is not one this "+
				"server's $export knows; Prefer: handling=lenient ignores only allowPartialManifests and "+
				"organizeOutputBy, which cannot widen the export: an unknown parameter may be meant to narrow it")
		default:
			return nil, kickoffError("export-parameter-unsupported", "a parameter of the request is not supported by "+
				"this server's $export, which takes _outputFormat, _type, _since and _typeFilter (send Prefer: "+
				"handling=lenient to have allowPartialManifests and organizeOutputBy ignored)")
		}
	}
	switch f := p.Query.Get("_outputFormat"); f {
	case "", "application/fhir+ndjson", "application/ndjson", "ndjson":
	case "application/fhir ndjson":
		// A '+' sent unencoded is read as a space (form decoding).
		return nil, kickoffError("export-format-unsupported", "_outputFormat arrived as \"application/fhir ndjson\": "+
			"a + in a query string means a space; encode + as %2B (_outputFormat=application/fhir%2Bndjson), or send ndjson").At("_outputFormat")
	default:
		return nil, kickoffError("export-format-unsupported",
			"_outputFormat must be application/fhir+ndjson (or application/ndjson, ndjson): the only format served").At("_outputFormat")
	}
	if len(p.Query["_since"]) > 1 {
		return nil, kickoffError("export-since-invalid", "_since is given more than once: it takes one instant").At("_since")
	}
	if v := p.Query.Get("_since"); v != "" {
		t, msg := search.ParseSince(v)
		switch {
		case msg != "":
			return nil, kickoffError("export-since-invalid", msg).At("_since")
		case t.After(now):
			return nil, kickoffError("export-since-future", "_since is in the future: no resource can have changed after it").At("_since")
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
				// An empty _type (a list built from an empty selection) is
				// not "every type": that would be the largest export.
				return nil, kickoffError("export-type-unknown", "a _type value is empty (_type= or two commas in a row): "+
					"name the resource types to export, or leave _type out to export every type the access token covers").At("_type")
			case !s.cfg.Engine.KnownType(typ) || typ == "Parameters":
				return nil, errTypeUnknown // the value is not quoted: it may be anything, a name
			case compartment && !inCompartment(typ):
				return nil, kickoffError("export-type-not-in-compartment", "_type names "+quoted(typ)+
					", which is not in the R4 patient compartment: a Patient or Group export has only Patients and the "+
					"resources about them; export "+typ+" with a system-level $export").At("_type")
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
	if err := req.typeFilters(sc, p.Query["_typeFilter"], s.cfg.Engine.Limits().Params); err != nil {
		return nil, err
	}
	for _, typ := range req.Types {
		// Refused now rather than failing the job: granular scopes whose
		// restrictions cannot be one implicit _typeFilter.
		if _, err := engine.Restriction(sc, typ); err != nil {
			return nil, err
		}
	}
	if p.Level == LevelGroup {
		members, tenant, err := s.groupMembers(ctx, sc, p.Group)
		if err != nil {
			return nil, err
		}
		req.Group, req.Members, req.GroupTenant = p.Group, members, tenant
	}
	return req, nil
}

// typeFilters reads _typeFilter values ("Type?query", comma-separated or
// repeated): each must name an exported type and be a search the store
// can run on it, without result parameters, that the caller of sc may run:
// a _has looks into another type, which needs read or search on it, as the
// same search does (engine.AllowLinked; 403 insufficient_scope otherwise).
// The filters of one type are one search of it, their criteria ORed, so
// together they may have at most maxParams search parameters, every
// occurrence counted, as one search may (search.Limits.Params; 400
// search-limit-exceeded): a thousand filters of one type used to be one
// ORed query the database could not run, and the job failed.
func (r *exportRequest) typeFilters(sc *auditlog.Scope, values []string, maxParams int) error {
	params := map[string]int{} // search parameters of each type's filters
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
			q, n, err := parseFilter(typ, query)
			if err != nil {
				return err
			}
			if params[typ] += n; params[typ] > maxParams {
				return kickoffError(search.RuleLimitExceeded, fmt.Sprintf("the _typeFilters of one type are one search of it "+
					"(their criteria ORed): together they may have at most %d search parameters, every occurrence counted; "+
					"combine them (a comma lists alternatives of one parameter), or export in several requests", maxParams)).
					At("_typeFilter")
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

// parseFilter parses one _typeFilter query on typ, and counts its search
// parameters (every occurrence).
func parseFilter(typ, query string) (_ *search.Query, params int, _ error) {
	vals, err := search.ParseQuery(typ, query)
	if err != nil {
		return nil, 0, kickoffError("export-typefilter-invalid", "a _typeFilter's search parameters are not a valid query string "+
			"(percent-encoded UTF-8)").At("_typeFilter")
	}
	// Result parameters first: search.Parse would check their values
	// and tell how to correct one (a _sort by another parameter), only
	// for the export to refuse it after (a new user's first hour).
	for name := range vals {
		name, _, _ = strings.Cut(name, ":")
		if search.ResultParam(name) {
			// _summary=true or _elements would be ignored: whole resources
			// exported to a client that asked for less.
			return nil, 0, kickoffError("export-typefilter-invalid", "a _typeFilter selects resources: "+
				"result parameters (_include, _revinclude, _sort, _summary, _elements, _count, _offset, _total, ...) "+
				"have no place in it (an export has whole resources, every match)").At("_typeFilter")
		}
	}
	q, err := search.Parse(typ, vals, false)
	if err != nil {
		msg := "a _typeFilter is not a valid search of " + typ
		var se *search.Error
		switch {
		case errors.As(err, &se) && se.Rule == search.RuleParamUnknown:
			// Its search parameters, not the result parameters a search
			// takes besides (refused above).
			msg += ": a parameter is not a search parameter of " + typ + " (its name is not repeated): " + search.SearchParams(typ)
		case errors.As(err, &se):
			msg += ": " + se.Message
		}
		return nil, 0, kickoffError("export-typefilter-invalid", msg).At("_typeFilter")
	}
	for _, c := range q.Clauses {
		if c.Chain != nil {
			return nil, 0, kickoffError("export-typefilter-invalid", "chained parameters are not supported in a _typeFilter").At("_typeFilter")
		}
	}
	for _, vs := range vals {
		params += len(vs)
	}
	return q, params, nil
}

// inCompartment reports whether typ belongs to a Patient or Group export:
// the types of R4's patient compartment (search.PatientCompartment), whose
// resources are about a patient. A type outside it (Organization,
// Practitioner, Medication) is refused at kick-off rather than exported as
// an empty file set without a word.
func inCompartment(typ string) bool {
	_, ok := search.PatientCompartment(typ)
	return ok
}

// compartmentParam is the reference search parameter that ties a resource
// of typ to its Patient (search.PatientCompartment): patient for most
// types, subject for AdverseEvent; "" for Patient itself and types
// outside the compartment.
func compartmentParam(typ string) string {
	if p, ok := search.PatientCompartment(typ); ok && p != "_id" {
		return p
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
