package engine

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/conformance"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
	"github.com/ketamine-gateway/ketamine-gateway/schemas/r4"
)

// typeInteractions are the interactions served for a type: AuditEvents
// are read-only (the gateway writes them).
func typeInteractions(typ string) []map[string]any {
	if clientWritable(typ) != nil {
		return interactions("read", "vread", "history-instance", "history-type", "search-type")
	}
	return interactions("read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create", "search-type")
}

// interactions renders CapabilityStatement interaction codes.
func interactions(names ...string) []map[string]any {
	out := make([]map[string]any, 0, len(names))
	for _, n := range names {
		out = append(out, map[string]any{"code": n})
	}
	return out
}

// systemInteractions are the whole system's interactions; the history
// says what it leaves out.
func systemInteractions() []map[string]any {
	out := interactions("transaction", "batch", "history-system")
	out[2]["documentation"] = "_count, _offset, _since and _type (a comma list of types). AuditEvents (one per request) " +
		"are left out unless _type names AuditEvent, so that a poll does not find the polls before it."
	return out
}

// Security is what the CapabilityStatement says of authentication.
type Security struct {
	// Enabled is false in development mode.
	Enabled bool
	// TokenURL is the SMART token endpoint's public URL.
	TokenURL string
	// CORS tells that browser apps of other origins may call the API
	// (the gateway's CORS origins are configured).
	CORS bool
}

// errNoTerminologyCapabilities answers metadata?mode=terminology.
var errNoTerminologyCapabilities = outcome.New(outcome.NotFound, "not-supported", "terminology-capabilities-unsupported",
	"the gateway publishes no TerminologyCapabilities (it is no terminology server): GET metadata without mode, or with "+
		"mode=full, is its CapabilityStatement").At("mode")

// checkMetadata checks the parameters of GET [base]/metadata
// (http.html#capabilities): mode full or normative (R4's
// CapabilityStatement is normative whole, so both are all of it);
// terminology is NotFound, as no TerminologyCapabilities is published,
// another mode Invalid; _summary and _elements as on a read. Other
// parameters are ignored.
func (e *Engine) checkMetadata(params url.Values) error {
	switch modes := params["mode"]; {
	case len(modes) > 1:
		return outcome.New(outcome.Invalid, "invalid", search.RuleValueInvalid, "mode is given more than once").At("mode")
	case len(modes) == 0, modes[0] == "full", modes[0] == "normative":
	case modes[0] == "terminology":
		return errNoTerminologyCapabilities
	default:
		return outcome.New(outcome.Invalid, "invalid", search.RuleValueInvalid,
			"mode is full, normative or terminology (http.html#capabilities)").At("mode")
	}
	_, elements, err := search.ParseSubset("CapabilityStatement", params)
	if err != nil {
		return searchError(err)
	}
	return e.checkSubset("CapabilityStatement", elements)
}

// Metadata is GET [base]/metadata with params: the CapabilityStatement
// (CapabilityStatement's contract), shaped by _summary or _elements as a
// read is (_summary=true leaves R4's summary elements: the types and their
// operations without the interactions and search parameters). Returns the
// errors of checkMetadata.
func (e *Engine) Metadata(base string, sec Security, params url.Values) (map[string]any, error) {
	if err := e.checkMetadata(params); err != nil {
		return nil, err
	}
	cs := e.CapabilityStatement(base, sec)
	if !params.Has("_summary") && !params.Has("_elements") {
		return cs, nil
	}
	body, err := fhirwire.Marshal(cs)
	if err != nil {
		return nil, err
	}
	r, err := e.Subset(&store.Resource{Type: "CapabilityStatement", Body: body}, params)
	if err != nil {
		return nil, err
	}
	return decodeJSON(r.Body)
}

// CapabilityStatement says exactly what is implemented (http.html#capabilities);
// base is the FHIR base URL the client used.
func (e *Engine) CapabilityStatement(base string, sec Security) map[string]any {
	var resources []map[string]any
	for _, typ := range r4.ResourceTypes() {
		if typ == notRESTful {
			continue // R4 gives it no RESTful endpoint
		}
		var params []map[string]any
		for _, p := range search.Params(typ) {
			params = append(params, searchParamEntry(p))
		}
		res := map[string]any{
			"type":              typ,
			"interaction":       typeInteractions(typ),
			"versioning":        "versioned",
			"readHistory":       true,
			"updateCreate":      e.updateCreate && ClientWritable(typ),
			"conditionalRead":   "full-support",
			"conditionalDelete": "not-supported",
			"referencePolicy":   []string{"literal", "logical"},
			"searchParam":       params,
		}
		if typ == snapshotType {
			res["documentation"] = "A search of AuditEvent is a snapshot (http.html#paging): it is bounded to the AuditEvents " +
				"recorded before its first page began by _lastUpdated=lt<instant> (an AuditEvent's meta.lastUpdated is its " +
				"recorded), which the gateway adds and its self, next and previous links carry, so that every page counts " +
				"the same total and following next in any order returns each of them once. The reads of the pages, " +
				"themselves audited, are found by a new search."
		}
		if typ == "Binary" {
			res["documentation"] = "A read or vread whose Accept names no FHIR type (text/plain, */*, a browser's) answers " +
				"the content in the Binary's contentType (binary.html), with X-Content-Type-Options: nosniff, " +
				"Content-Security-Policy: sandbox, and as an attachment what a browser would render; an Accept " +
				"naming a FHIR type, _format, or no Accept answer the resource as FHIR JSON."
		}
		// Conditional writes and If-Match on update only where clients
		// write: a read-only type (AuditEvent, the conformance types)
		// keeps its versions, and that is all it claims.
		if ClientWritable(typ) {
			res["versioning"] = "versioned-update"
			res["conditionalCreate"] = true
			res["conditionalUpdate"] = true
		}
		// The values the search parser accepts, from its own tables.
		if inc := search.Includes(typ); len(inc) > 0 {
			res["searchInclude"] = inc
		}
		if rev := search.RevIncludes(typ); len(rev) > 0 {
			res["searchRevInclude"] = rev
		}
		if sp := e.v.profiles.SupportedProfiles(typ); len(sp) > 0 {
			res["supportedProfile"] = sp
		}
		switch typ {
		case "Patient":
			res["operation"] = []map[string]any{{"name": "everything",
				"definition": conformance.EverythingURL,
				"documentation": "GET or POST Patient/{id}/$everything: the Patient and its compartment's resources the caller " +
					"may see; start and end (a period of care, compared with each type's date of care), _since, _type, _count and " +
					"paging (_offset); not the type-level form. " +
					"AuditEvents only when _type names them. Resources the compartment's resources reference are not added."},
				bulkExport(bulkPatientExportURL, "The Patients and the resources about them, as NDJSON files")}
		case "Group":
			res["operation"] = []map[string]any{bulkExport(bulkGroupExportURL, "A Group's Patients and the resources about them, as NDJSON files")}
		}
		resources = append(resources, res)
	}
	// software is the build (what `ketamine-gateway version` prints), by
	// which a support ticket names what runs; the mapping version, which
	// versions the FHIR the gateway makes and its conformance resources, is
	// in implementation.description.
	software := map[string]any{"name": "ketamine-gateway"}
	if e.version != "" {
		software["version"] = e.version
	}
	return map[string]any{
		"resourceType": "CapabilityStatement",
		"status":       "active",
		"date":         "2026-11-25",
		"publisher":    "ketamine-gateway project",
		"kind":         "instance",
		"software":     software,
		"implementation": map[string]any{
			"description": "Ketamine-therapy FHIR gateway; mapping " + mapping.Version +
				" (the version of the FHIR it maps native records to and of its profiles, ValueSets, CodeSystems and ImplementationGuide)",
			"url": base,
		},
		"instantiates":        []string{bulkDataCapabilityURL},
		"fhirVersion":         "4.0.1",
		"format":              []string{"application/fhir+json", "json"},
		"patchFormat":         PatchFormats(),
		"implementationGuide": []string{conformance.GuideURL},
		"rest": []map[string]any{{
			"mode": "server",
			"documentation": "References to resources the gateway does not hold are accepted (referential integrity is off). " +
				"Transactions are atomic; batch entries are independent. Search supports _count, _offset paging, _sort on dates, " +
				"_summary=count, _total, _include and _revinclude on reference parameters, the :missing, :exact, :contains, :not, " +
				":text, :of-type (identifier) and :identifier modifiers and the date/number/quantity prefixes. Chained parameters and _has are supported one " +
				"link deep: param[:Type].parameter (without :Type over every target type that defines the parameter), " +
				"and _has:Type:reference-parameter:parameter; both need the right to read or search the other type. Resource types without specific search " +
				"parameters support _id, _lastUpdated and patient: R4's where R4 defines one for the type (its definition is cited), " +
				"else the gateway's own, any reference to a Patient. The patient compartment uses R4's patient parameter of each type " +
				"(AdverseEvent's subject, Group's member, Schedule's actor, SupplyRequest's subject where R4 has none), not the " +
				"parameters that name the patient as a participant (asserter, recorder, performer, author). " +
				"_tag, _profile and _security are not searchable (not indexed: each would add a row per label to every write). " +
				searchLimitsDoc(e.limits),
			"resource":    resources,
			"interaction": systemInteractions(),
			// GET /fhir/Patient/{id}/{type}: the patient compartment.
			"compartment": []string{"http://hl7.org/fhir/CompartmentDefinition/patient"},
			"searchParam": commonSearchParams(),
			"operation": []map[string]any{{
				"name":       "validate",
				"definition": conformance.ValidateURL,
			}, bulkExport(bulkExportURL, "Every resource the client may read, of its tenant, as NDJSON files")},
			"security": capabilitySecurity(sec),
		}},
	}
}

// commonSearchParams are the CapabilityStatement's rest.searchParam: the
// parameters of every resource type (search.CommonParams).
func commonSearchParams() []map[string]any {
	var out []map[string]any
	for _, p := range search.CommonParams() {
		out = append(out, searchParamEntry(p))
	}
	return out
}

// searchParamEntry is a CapabilityStatement searchParam entry of p.
func searchParamEntry(p search.Param) map[string]any {
	sp := map[string]any{"name": p.Name, "type": string(p.Type)}
	if p.Description != "" {
		sp["documentation"] = p.Description
	}
	switch {
	case p.Type == search.TypeReference:
		sp["documentation"] = p.Description + ". Chainable one link deep (" + p.Name +
			"[:Type].parameter, a search parameter of the target type); a target of _has."
	case len(p.Systems) > 0:
		sp["documentation"] = p.Description + ". The codes carry the system their R4 binding implies (" +
			strings.Join(p.Systems, ", ") + "): system|code, system| and code find them, |code does not."
	case p.Type == search.TypeQuantity || p.Type == search.TypeNumber:
		sp["documentation"] = p.Description + ". Prefixes compare ranges (search.html#prefix): the search " +
			"value's implicit precision (100 is [99.5, 100.5)) with the stored value, which a Quantity's " +
			"comparator makes a range (<5 is below 5)."
	}
	if p.Definition != "" {
		// R4's SearchParameter, or the gateway's own (published
		// at /fhir/SearchParameter); none for the gateway's own
		// patient parameter of the types R4 gives none.
		sp["definition"] = p.Definition
	}
	return sp
}

// searchLimitsDoc states the search limits l (the engine's, defaults
// filled in) and those of the search package, so that a client knows them
// before a search meets them (R4's CapabilityStatement has no element for
// them).
func searchLimitsDoc(l search.Limits) string {
	return fmt.Sprintf("Search limits: _count at most %d (a larger _count is taken as %d); at most %d parameters in a "+
		"search (every occurrence counted), %d occurrences of one parameter, %d comma-separated values in one occurrence, "+
		"%d _include and _revinclude, %d included resources in a page, and at most %d :text and :contains values in all "+
		"(every occurrence and comma-separated value counted: each reads every entry of its parameter rather than an index); "+
		"beyond them a search is 400 search-limit-exceeded (before the database is asked; the included resources as they "+
		"are found). _include:iterate and _revinclude:iterate stop after %d further rounds (an outcome entry says so). "+
		"A page of a search, a history or a $everything holds at most %s of resources (the first whatever its size): "+
		"past it the page ends before its _count, with a next link, and included resources past it are 400 "+
		"search-limit-exceeded.",
		search.MaxCount, search.MaxCount, l.Params, l.Repeats, l.Values, l.Includes, l.Included, search.MaxScanValues,
		l.IncludeRounds, search.Bytes(int64(l.PageBytes)))
}

// The FHIR Bulk Data Access IG (v2) canonical URLs of the export the
// gateway serves (GET [base]/$export, [base]/Patient/$export,
// [base]/Group/{id}/$export, docs/bulk.md): the CapabilityStatement
// instantiates the IG's and names HL7's OperationDefinitions, which the
// gateway does not republish.
const (
	bulkDataCapabilityURL = "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"
	bulkExportURL         = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"
	bulkPatientExportURL  = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"
	bulkGroupExportURL    = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"
)

// bulkExport is the CapabilityStatement operation of a Bulk Data $export
// (definition, one of the bulk*ExportURL) that exports what.
func bulkExport(definition, what string) map[string]any {
	return map[string]any{"name": "export", "definition": definition,
		"documentation": what + " (FHIR Bulk Data v2): Prefer: respond-async; _type, _since, _typeFilter, _outputFormat " +
			"(application/fhir+ndjson); 202 with the job's status URL in Content-Location."}
}

// capabilitySecurity describes authentication (http.html#security): SMART
// Backend Services with the token endpoint, or development mode.
func capabilitySecurity(sec Security) map[string]any {
	if !sec.Enabled {
		return map[string]any{"cors": sec.CORS,
			"description": "Development mode: no authentication (served on a loopback address only)."}
	}
	return map[string]any{
		"cors": sec.CORS,
		"service": []any{map[string]any{"coding": []any{map[string]any{
			"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}}}},
		"extension": []any{map[string]any{
			"url":       "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
			"extension": []any{map[string]any{"url": "token", "valueUri": sec.TokenURL}},
		}},
		"description": "SMART Backend Services (client_credentials with a private_key_jwt assertion); SMART v2 system " +
			"scopes per interaction and Bundle entry, and granular scopes restricted by token search parameters " +
			"(system/Observation.rs?category=system|code), enforced on every read, search (criteria and total), write " +
			"and export; each client sees only its tenant's data. See /.well-known/smart-configuration.",
	}
}
