package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/schemas/r4"
)

// ValidateRequest is one invocation of $validate
// (resource-operation-validate.html).
type ValidateRequest struct {
	// Type and ID are the URL's: both "" at the system level
	// (/fhir/$validate), ID "" at the type level.
	Type, ID string
	// Query holds the URL's query parameters: profile and mode (_format
	// and _pretty are the edge's); any other is Invalid.
	Query url.Values
	// Body reads the request body; nil when the request has none (a
	// mode=delete at the instance level needs none).
	Body Body
}

// The modes of $validate (R4's resource-validation-mode).
const (
	modeCreate  = "create"
	modeUpdate  = "update"
	modeDelete  = "delete"
	modeProfile = "profile"
)

// r4Base is the prefix of R4's base StructureDefinitions.
const r4Base = "http://hl7.org/fhir/StructureDefinition/"

// validateInput is what a $validate request asks: the resource (nil when
// none), the mode ("" none given) and the profiles, each with the FHIRPath
// of where it was given ("" the query).
type validateInput struct {
	resource  []byte
	mode      string
	modeWhere string
	profiles  []givenProfile
}

// givenProfile is a profile given to $validate, with the FHIRPath of where
// it was given ("" the query).
type givenProfile struct{ url, where string }

// errValidateParam refuses a parameter of $validate at where.
func errValidateParam(code, msg, where string) error {
	return outcome.New(outcome.Invalid, code, "operation-parameters-invalid", msg).At(where)
}

// Validate is $validate (resource.html#validate): the issues of a resource
// and whether it is valid, in the mode asked. No mode is R4's general
// validation: the resource's content (R4 structure, the profiles it claims
// that the gateway knows, the profile given), at any level. create checks
// the resource as a create of its type would: its content, and whether a
// client may create the type and the identifiers it carries; update also that it
// carries the id (the URL's at the instance level) and that its type and
// id are ones a client may write; delete checks, ignoring any content,
// that the resource named (the URL's instance, or the resource's type and
// id) exists and a client may delete it. mode=profile is not supported
// (Invalid validate-mode-unsupported). An invalid resource is a result,
// not an error; a parameter $validate does not take, a mode outside R4's
// codes, a profile the gateway does not know are Invalid errors naming
// where they were given. Each mode needs the caller's scope of the
// interaction it checks on the type: create, update or delete (Forbidden
// otherwise).
func (e *Engine) Validate(ctx context.Context, sc *auditlog.Scope, req ValidateRequest) (bool, []outcome.Issue, error) {
	if req.Type != "" {
		if err := e.checkType(req.Type); err != nil {
			return false, nil, err
		}
	}
	if req.ID != "" && !fhirwire.ValidID(req.ID) {
		return false, nil, errResourceUnkown
	}
	in, err := validateQuery(req.Query)
	if err != nil {
		return false, nil, err
	}
	var raw []byte
	if req.Body != nil {
		if raw, err = req.Body(); err != nil {
			return false, nil, err
		}
	}
	if err := in.parameters(raw); err != nil {
		return false, nil, err
	}
	switch {
	case in.mode == "":
		// No mode is R4's default, general validation: the content only,
		// not whether a client may write it (a conformance review: a
		// ValueSet was "invalid" for being read-only here).
	case !slices.Contains([]string{modeCreate, modeUpdate, modeDelete, modeProfile}, in.mode):
		return false, nil, errValidateParam("code-invalid", "mode must be one of R4's create, update, delete or profile", in.modeWhere)
	case in.mode == modeProfile:
		return false, nil, outcome.New(outcome.Invalid, "not-supported", "validate-mode-unsupported",
			"mode=profile is not supported: leave the mode out and give the profile; the resource is then checked against R4, "+
				"the profiles it claims and the one given").At(in.modeWhere)
	case in.mode == modeCreate && req.ID != "":
		return false, nil, errValidateParam("not-supported", "mode=create has no id: validate a create at the type, "+
			"POST /fhir/{type}/$validate; an instance takes mode=update or mode=delete", in.modeWhere)
	}
	if in.mode == modeDelete {
		return e.validateDelete(ctx, sc, req, in)
	}
	if in.resource == nil {
		return false, nil, outcome.New(outcome.Invalid, "required", "validate-resource-missing",
			"$validate needs the resource as the body, or a Parameters body with a resource parameter")
	}
	rt := resourceTypeOf(in.resource)
	if req.Type != "" {
		rt = req.Type
	}
	if rt != "" && e.checkType(rt) == nil {
		// As the create it checks: a client that may not create the type
		// has nothing to validate a create of, and a resource's validation
		// costs what its write does (an attacker's review: any client,
		// whatever its scopes, could have the gateway parse and check 16
		// MiB bodies of any type). General validation needs a scope on
		// the type: to read, create or update it.
		if err := allowValidate(sc, rt, in.mode); err != nil {
			return false, nil, err
		}
	}
	var urls []string
	var extra []outcome.Issue
	for _, p := range in.profiles {
		u, issue, err := e.resolveProfile(p, rt)
		if err != nil {
			return false, nil, err
		}
		if u != "" {
			urls = append(urls, u)
		}
		if issue != nil {
			extra = append(extra, *issue)
		}
	}
	valid, issues := e.v.Check(in.resource, req.Type, urls...)
	issues = append(issues, extra...)
	if in.mode == modeCreate && rt != "" {
		// The create it checks is refused 405 for a type clients may not
		// write (AuditEvent, the published conformance resources): so is
		// the verdict (a conformance review: it said valid).
		if err := clientWritable(rt); err != nil {
			_, more := outcome.From(err)
			for i := range more {
				more[i].Expression = rt
			}
			issues = append(issues, more...)
		}
	}
	if in.mode == "" && req.ID != "" {
		// General validation of an instance: a resource that says it is
		// another one is not that instance.
		if rid := resourceID(in.resource); rid != "" && rid != req.ID {
			issues = append(issues, outcome.Issue{Severity: "error", Code: "invalid", Rule: "id-mismatch", Expression: rt + ".id",
				Message: "the resource id must equal the id in the URL"})
		}
	}
	id := ""
	if in.mode == modeUpdate {
		more, err := e.validateUpdate(ctx, sc, req, rt, in.resource)
		if err != nil {
			return false, nil, err
		}
		issues = append(issues, more...)
		if id = req.ID; id == "" {
			id = resourceID(in.resource)
		}
	}
	if in.mode != "" { // a write's rule
		more, err := e.reservedIssues(ctx, sc, rt, id, in.resource)
		if err != nil {
			return false, nil, err
		}
		issues = append(issues, more...)
	}
	valid = valid && !slices.ContainsFunc(issues, func(i outcome.Issue) bool { return i.Severity == "error" || i.Severity == "fatal" })
	return valid, issues, nil
}

// allowValidate is the scope $validate of a resource of type rt in mode
// needs (delete's is validateDelete's): create's to validate a create
// (update's is validateUpdate's); for general validation (no mode), the
// scope to read, create or update the type, the first named when none.
func allowValidate(sc *auditlog.Scope, rt, mode string) error {
	switch mode {
	case modeCreate:
		return allow(sc, rt, 'c')
	case "":
		err := allow(sc, rt, 'r')
		for _, perm := range []byte{'c', 'u'} {
			if err != nil && allow(sc, rt, perm) == nil {
				err = nil
			}
		}
		return err
	}
	return nil
}

// validateQuery reads the query parameters of $validate: profile and
// mode, each at most once. Another parameter is Invalid; it is named
// when it is one of R4's $validate parameters, never otherwise (a
// made-up name may be anything, docs/security.md).
func validateQuery(q url.Values) (*validateInput, error) {
	in := &validateInput{}
	for _, key := range slices.Sorted(maps.Keys(q)) {
		vals := q[key]
		switch key {
		case "_format", "_pretty":
			continue
		case "profile", "mode":
			if len(vals) > 1 {
				return nil, errValidateParam("invalid", key+" is given more than once; give it once", key)
			}
		case "resource":
			return nil, errValidateParam("not-supported", "the resource to validate is the body (or the resource "+
				"parameter of a Parameters body), not a query parameter", key)
		default:
			return nil, errValidateParam("not-supported", "a query parameter $validate does not take was sent, and "+
				"nothing was validated: it takes profile and mode (create, update or delete)", "")
		}
		if key == "profile" {
			in.profiles = append(in.profiles, givenProfile{vals[0], ""})
		} else {
			in.mode, in.modeWhere = vals[0], "mode"
		}
	}
	return in, nil
}

// parameters reads the body of $validate into in: the resource itself,
// or a Parameters resource with the parameters resource, mode and profile
// (a Parameters body with none of them is the resource to validate: R4
// has no other way to validate a Parameters resource on its own, which
// is not a RESTful type). A Parameters with one of them and another
// parameter, a parameter given twice or a value of another type is
// Invalid naming the element.
func (in *validateInput) parameters(body []byte) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	in.resource = body
	var p struct {
		ResourceType string          `json:"resourceType"`
		Parameter    []validateParam `json:"parameter"`
	}
	if json.Unmarshal(body, &p) != nil || p.ResourceType != "Parameters" ||
		!slices.ContainsFunc(p.Parameter, func(x validateParam) bool {
			return x.Name == "resource" || x.Name == "mode" || x.Name == "profile"
		}) {
		return nil // the resource itself
	}
	in.resource = nil
	seen := map[string]bool{}
	for i, x := range p.Parameter {
		where := fmt.Sprintf("Parameters.parameter[%d]", i)
		if seen[x.Name] {
			return errValidateParam("invalid", "the "+x.Name+" parameter of $validate is given more than once", where)
		}
		seen[x.Name] = true
		switch x.Name {
		case "resource":
			if len(x.Resource) == 0 || string(x.Resource) == "null" {
				return outcome.New(outcome.Invalid, "required", "validate-resource-missing",
					"the resource parameter carries no resource").At(where + ".resource")
			}
			in.resource = x.Resource
		case "mode":
			if x.ValueCode == nil {
				return errValidateParam("required", "the mode parameter takes a valueCode: create, update or delete", where)
			}
			if in.mode != "" {
				return errValidateParam("invalid", "mode is given in the query and in the Parameters body; give it once", where)
			}
			in.mode, in.modeWhere = *x.ValueCode, where+".valueCode"
		case "profile":
			n := len(in.profiles)
			for _, v := range []struct {
				suffix string
				v      *string
			}{{"Uri", x.ValueURI}, {"Canonical", x.ValueCanonical}, {"String", x.ValueString}} {
				if v.v != nil && len(in.profiles) == n {
					in.profiles = append(in.profiles, givenProfile{*v.v, where + ".value" + v.suffix})
				}
			}
			if len(in.profiles) == n {
				return errValidateParam("required", "the profile parameter takes a valueUri or valueCanonical", where)
			}
		default:
			return errValidateParam("not-supported", "a parameter $validate does not take: it takes resource, mode "+
				"(create, update or delete) and profile", where+".name")
		}
	}
	return nil
}

// validateParam is a parameter of a $validate Parameters body.
type validateParam struct {
	Name           string          `json:"name"`
	Resource       json.RawMessage `json:"resource"`
	ValueURI       *string         `json:"valueUri"`
	ValueCanonical *string         `json:"valueCanonical"`
	ValueString    *string         `json:"valueString"`
	ValueCode      *string         `json:"valueCode"`
}

// resourceTypeOf is the resourceType of a JSON resource ("" when it has
// none).
func resourceTypeOf(raw []byte) string {
	var r struct {
		ResourceType string `json:"resourceType"`
	}
	_ = json.Unmarshal(raw, &r)
	return r.ResourceType
}

// resourceID is the id of a JSON resource ("" when it has none).
func resourceID(raw []byte) string {
	var r struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(raw, &r)
	return r.ID
}

// resolveProfile resolves a profile given to $validate of a resource of
// rt: the url to check (a kg-* or vital-signs profile), or an issue of the
// verdict (a StructureDefinition the gateway knows that does not
// constrain rt: R4's base definition of another type, one of the
// gateway's extensions), or neither (R4's base definition of rt: what
// every resource is checked against anyway). Another is Invalid
// profile.unknown naming where it was given.
func (e *Engine) resolveProfile(p givenProfile, rt string) (string, *outcome.Issue, error) {
	if _, ok := e.v.profiles.Resolve(p.url); ok {
		return p.url, nil, nil
	}
	u, version, versioned := strings.Cut(p.url, "|")
	mismatch := func(what string) *outcome.Issue {
		return &outcome.Issue{Severity: "error", Code: "invalid", Rule: "profile.type-mismatch", Expression: rt,
			Message: fmt.Sprintf("the StructureDefinition %s %s, not a profile of %s", u, what, rt)}
	}
	if name, ok := strings.CutPrefix(u, r4Base); ok && r4.IsResourceType(name) && (!versioned || version == "4.0.1") {
		if name == rt || rt == "" {
			return "", nil, nil
		}
		return "", mismatch("is R4's base definition of " + name), nil
	}
	for _, x := range e.v.profiles.Extensions() {
		if x.URL == u && (!versioned || version == x.Version) {
			return "", mismatch("defines one of the gateway's extensions (its url goes in an extension of the resource)"), nil
		}
	}
	msg := "the profile query parameter names a profile the gateway does not know"
	if p.where != "" {
		msg = "the profile parameter names a profile the gateway does not know"
	}
	return "", nil, outcome.New(outcome.Invalid, "not-supported", "profile.unknown", msg+
		": one of its kg-* profiles, an R4 vital-signs profile (CapabilityStatement.rest.resource.supportedProfile) "+
		"or R4's base definition of the resource's type").At(p.where)
}

// validateUpdate is what mode=update checks beyond the resource's
// content (raw, of type rt), as issues of the verdict: that it carries an
// id (the URL's at the instance level) that a client may write at, of a
// type clients write, and not over one of the gateway's own Provenances.
// The caller needs the update scope on the type.
func (e *Engine) validateUpdate(ctx context.Context, sc *auditlog.Scope, req ValidateRequest, rt string, raw []byte) ([]outcome.Issue, error) {
	if !e.v.KnownType(rt) {
		return nil, nil // the structural issues say what is wrong
	}
	if err := allow(sc, rt, 'u'); err != nil {
		return nil, err
	}
	var r struct {
		ID *string `json:"id"`
	}
	_ = json.Unmarshal(raw, &r)
	switch {
	case r.ID == nil && req.ID != "":
		return []outcome.Issue{{Severity: "error", Code: "required", Rule: "id-mismatch", Expression: rt + ".id",
			Message: "an update's resource carries its id, the id in the URL"}}, nil
	case r.ID == nil:
		return []outcome.Issue{{Severity: "error", Code: "required", Rule: "id-mismatch", Expression: rt + ".id",
			Message: "an update's resource carries its id (PUT /fhir/{type}/{id}); validate at the instance, " +
				"POST /fhir/{type}/{id}/$validate, or give the resource its id"}}, nil
	case req.ID != "" && *r.ID != req.ID:
		return []outcome.Issue{{Severity: "error", Code: "invalid", Rule: "id-mismatch", Expression: rt + ".id",
			Message: "the resource id must equal the id in the URL"}}, nil
	}
	return e.writableIssues(ctx, sc, rt, *r.ID, false)
}

// validateDelete is $validate with mode=delete: whether the resource the
// request names (the URL's instance, or the type and id of the resource
// given) exists and a client may delete it; the content is not checked.
// The caller needs the delete scope on the type.
func (e *Engine) validateDelete(ctx context.Context, sc *auditlog.Scope, req ValidateRequest, in *validateInput) (bool, []outcome.Issue, error) {
	if len(in.profiles) > 0 {
		return false, nil, errValidateParam("not-supported", "mode=delete checks whether the resource may be deleted, "+
			"not its content: leave the profile out", in.profiles[0].where)
	}
	typ, id := req.Type, req.ID
	if id == "" && in.resource != nil {
		var r struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
		}
		_ = json.Unmarshal(in.resource, &r)
		if typ == "" || typ == r.ResourceType {
			typ, id = r.ResourceType, r.ID
		}
	}
	if typ == "" || id == "" {
		return false, nil, errValidateParam("required", "mode=delete names the resource to delete: "+
			"POST /fhir/{type}/{id}/$validate?mode=delete, or give a resource with its id", in.modeWhere)
	}
	if err := e.checkType(typ); err != nil {
		return false, nil, err
	}
	if err := allow(sc, typ, 'd'); err != nil {
		return false, nil, err
	}
	issues, err := e.writableIssues(ctx, sc, typ, id, true)
	if err != nil {
		return false, nil, err
	}
	return len(issues) == 0, issues, nil
}

// writableIssues are the reasons a client may not update (or, with
// del, delete) typ/id, as issues of a verdict: an id the gateway does
// not accept, a read-only type or id, one of the gateway's own
// Provenances; for a delete also a resource that does not exist (or is
// deleted already), which a DELETE would answer 204 without deleting
// anything.
func (e *Engine) writableIssues(ctx context.Context, sc *auditlog.Scope, typ, id string, del bool) ([]outcome.Issue, error) {
	asIssues := func(err error) []outcome.Issue {
		_, issues := outcome.From(err)
		for i := range issues {
			if issues[i].Expression == "" {
				issues[i].Expression = typ + ".id"
			}
		}
		return issues
	}
	if err := e.checkWriteID(typ, id, !del); err != nil {
		return asIssues(err), nil
	}
	if err := clientWritableAt(typ, id); err != nil {
		return asIssues(err), nil
	}
	rd := readsAt{ctx, e.reader(sc, reads{})}
	perm := byte('u')
	if del {
		perm = 'd'
	}
	// As the write's granular scopes' checks answer (checkStored): a
	// resource they hide is another tenant's, a deleted one by the
	// version before the deletion.
	switch err := e.checkStored(rd, sc, typ, id, perm); {
	case errors.Is(err, errForeign) && !del:
		return asIssues(errIDTaken), nil
	case errors.Is(err, errForeign):
		return []outcome.Issue{{Severity: "error", Code: "not-found", Rule: "resource-unknown", Expression: typ + ".id",
			Message: "no such resource: a DELETE would answer 204 and delete nothing"}}, nil
	case err != nil:
		return asIssues(err), nil
	}
	// (A deletion the caller may not be told of was refused above as
	// another tenant's: checkStored judges it by its last content, as
	// deletionShown does.)
	cur, err := rd.Read(typ, id)
	switch {
	case !del && (errors.Is(err, errForeign) || cur != nil && cur.Tenant != sc.TenantOf()):
		// As update answers: an id another tenant holds (or a shared
		// conformance resource) cannot be updated, and the answer is the
		// one an unused id gets without update-as-create.
		return asIssues(errIDTaken), nil
	case !del && errors.Is(err, store.ErrNotFound) && !e.choosesIDs(sc, typ, 'u'):
		return asIssues(errIDTaken), nil // a client may not choose the id
	case errors.Is(err, store.ErrGone) && del:
		return []outcome.Issue{{Severity: "error", Code: "not-found", Rule: "resource-deleted", Expression: typ + ".id",
			Message: "the resource is deleted already: a DELETE would answer 204 and delete nothing"}}, nil
	case (errors.Is(err, store.ErrNotFound) || err == nil && !e.Visible(sc, cur)) && del:
		return []outcome.Issue{{Severity: "error", Code: "not-found", Rule: "resource-unknown", Expression: typ + ".id",
			Message: "no such resource: a DELETE would answer 204 and delete nothing"}}, nil
	case errors.Is(err, store.ErrGone) || errors.Is(err, store.ErrNotFound):
		return nil, nil // an update creates it
	case err != nil:
		return nil, err
	}
	if typ == "Provenance" && e.Visible(sc, cur) {
		if stored, err := decodeJSON(cur.Body); err == nil && audit.IsGatewayProvenance(stored) {
			return asIssues(errProvenanceReadOnly), nil
		}
	}
	return nil, nil
}
