package engine

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
)

// Validate is $validate (resource.html#validate): the issues of a
// resource as one of typ ("" any type) and whether it is valid. The body
// is the resource, or a Parameters resource with the parameters resource
// and profile; profile ("" none) is the profile query parameter. An
// invalid resource is a result, not an error; a profile the gateway does
// not know is an Invalid error naming where it was given.
func (e *Engine) Validate(ctx context.Context, sc *auditlog.Scope, typ, profile string, body Body) (bool, []outcome.Issue, error) {
	if typ != "" {
		if err := e.checkType(typ); err != nil {
			return false, nil, err
		}
	}
	raw, err := body()
	if err != nil {
		return false, nil, err
	}
	type given struct{ url, where string }
	var profiles []given
	if profile != "" {
		profiles = append(profiles, given{profile, ""})
	}
	if res, url, where, ok, err := validateParameters(raw); err != nil {
		return false, nil, err
	} else if ok {
		raw = res
		if url != "" {
			profiles = append(profiles, given{url, where})
		}
	}
	urls := make([]string, 0, len(profiles))
	for _, p := range profiles {
		if _, ok := e.v.profiles.Resolve(p.url); !ok {
			msg := "the profile query parameter names a profile the gateway does not know"
			if p.where != "" {
				msg = "the profile parameter names a profile the gateway does not know"
			}
			return false, nil, outcome.New(outcome.Invalid, "not-supported", "profile.unknown", msg+
				": one of its kg-* profiles or an R4 vital-signs profile (CapabilityStatement.rest.resource.supportedProfile)").At(p.where)
		}
		urls = append(urls, p.url)
	}
	valid, issues := e.v.Check(raw, typ, urls...)
	return valid, issues, nil
}

// validateParameters reads a $validate Parameters body: the resource to
// validate (re-encoded) and the profile with the FHIRPath of its value.
// ok is false when body is not such a Parameters resource (it is then the
// resource itself: a Parameters without a resource parameter is validated
// as a Parameters resource). Returns an Invalid error for a resource
// parameter without a resource.
func validateParameters(body []byte) (res []byte, profile, where string, ok bool, err error) {
	var p struct {
		ResourceType string `json:"resourceType"`
		Parameter    []struct {
			Name           string          `json:"name"`
			Resource       json.RawMessage `json:"resource"`
			ValueURI       string          `json:"valueUri"`
			ValueCanonical string          `json:"valueCanonical"`
			ValueString    string          `json:"valueString"`
		} `json:"parameter"`
	}
	if json.Unmarshal(body, &p) != nil || p.ResourceType != "Parameters" {
		return nil, "", "", false, nil
	}
	for i, x := range p.Parameter {
		switch x.Name {
		case "resource":
			if len(x.Resource) == 0 || string(x.Resource) == "null" {
				return nil, "", "", false, outcome.New(outcome.Invalid, "required", "validate-resource-missing",
					"the resource parameter carries no resource").At(fmt.Sprintf("Parameters.parameter[%d].resource", i))
			}
			res, ok = x.Resource, true
		case "profile":
			for _, v := range []struct{ suffix, v string }{{"Uri", x.ValueURI}, {"Canonical", x.ValueCanonical}, {"String", x.ValueString}} {
				if v.v != "" {
					profile, where = v.v, fmt.Sprintf("Parameters.parameter[%d].value%s", i, v.suffix)
				}
			}
		}
	}
	if !ok {
		return nil, "", "", false, nil
	}
	return res, profile, where, true, nil
}
