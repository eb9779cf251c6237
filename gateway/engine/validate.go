package engine

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/profile"
	"github.com/ketamine-gateway/ketamine-gateway/schemas/r4"
)

// Validator checks FHIR resources: R4 structure (types, cardinality,
// primitives, invariants) and the profiles a resource claims. It holds the
// compiled R4 definitions and profiles; build one per process.
type Validator struct {
	r4       *r4.Validator
	profiles *profile.Set
}

// NewValidator compiles the embedded R4 definitions and the profiles.
func NewValidator() *Validator {
	return &Validator{r4: r4.New(r4.Options{}), profiles: profile.MustNew()}
}

// ProfileSet returns the profiles the validator checks.
func (v *Validator) ProfileSet() *profile.Set { return v.profiles }

// KnownType reports whether typ is a FHIR R4 resource type.
func (v *Validator) KnownType(typ string) bool { return v.r4.KnownType(typ) }

// TypeHint names the R4 resource type a misspelt typ is nearest to, as
// the end of a message ("" for none).
func (v *Validator) TypeHint(typ string) string { return v.r4.TypeHint(typ) }

// Resource checks body as a resource of typ and returns it decoded (numbers
// kept exact), from the one parse that validated it. expr roots the
// issues' expressions inside a Bundle ("" for a resource on its own). An
// Invalid error names every structural problem; an Unprocessable one a
// broken profile rule.
func (v *Validator) Resource(body []byte, typ, expr string) (map[string]any, error) {
	m, err := v.decoded(body, typ, expr)
	if err != nil {
		return nil, err
	}
	if expr == "" {
		expr = typ
	}
	if err := v.Profiles(m, expr); err != nil {
		return nil, err
	}
	return m, nil
}

// Decoded checks body as a resource of typ against the R4 structure only
// and returns it decoded (numbers kept exact) from the same parse; Invalid
// naming every problem.
func (v *Validator) Decoded(body []byte, typ string) (map[string]any, error) {
	return v.decoded(body, typ, "")
}

// decoded is Decoded with the issues' expressions rooted at expr ("" for
// a resource on its own; otherwise a Bundle entry's).
func (v *Validator) decoded(body []byte, typ, expr string) (map[string]any, error) {
	validate := v.r4.ValidateDecoded
	if expr != "" {
		validate = v.r4.ValidateDecodedEntry // a Bundle entry's: a conditional reference is allowed
	}
	res, decoded := validate(body, typ)
	if !res.Valid() {
		issues := outcome.FHIRIssues(res)
		if expr != "" {
			for i := range issues {
				issues[i].Expression = nestedExpr(expr, res.ResourceType, issues[i].Expression)
			}
		}
		return nil, &outcome.Error{Kind: outcome.Invalid, Issues: issues}
	}
	m, ok := decoded.(map[string]any)
	if !ok {
		return nil, outcome.New(outcome.Invalid, "structure", "json-syntax", "the resource is not a JSON object")
	}
	return m, nil
}

// nestedExpr re-roots the FHIRPath of an issue of a resource of typ,
// validated on its own ("Observation.status"), at the element expr that
// holds it ("Bundle.entry[0].resource"), naming the type with ofType as
// the validator does for a resource it finds nested
// ("Bundle.entry[0].resource.ofType(Observation).status").
func nestedExpr(expr, typ, issue string) string {
	if rest, ok := strings.CutPrefix(issue, typ); ok && typ != "" && (rest == "" || rest[0] == '.' || rest[0] == '[') {
		return expr + ".ofType(" + typ + ")" + rest
	}
	return outcome.PrefixExpr(expr, issue)
}

// Structure checks body as a resource of typ against the R4 structure
// only (Invalid naming every problem).
func (v *Validator) Structure(body []byte, typ string) error {
	if res := v.r4.ValidateAs(body, typ); !res.Valid() {
		return &outcome.Error{Kind: outcome.Invalid, Issues: outcome.FHIRIssues(res)}
	}
	return nil
}

// Profiles checks the gateway profiles doc claims (Unprocessable when one
// is broken). expr is doc's FHIRPath.
func (v *Validator) Profiles(doc map[string]any, expr string) error {
	return profile.Error(v.profiles.Check(doc, expr))
}

// Document checks a resource or a Bundle of any type, structurally and
// against the profiles it and its entries claim (the CLI's validate).
func (v *Validator) Document(body []byte) error {
	res := v.r4.Validate(body)
	if !res.Valid() {
		return &outcome.FHIRInvalid{Result: res}
	}
	m, err := decodeJSON(body)
	if err != nil {
		return &outcome.FHIRInvalid{Result: res}
	}
	typ, _ := m["resourceType"].(string)
	return profile.Error(v.profileIssues(m, typ))
}

// profileIssues are doc's issues against the profiles it claims and the
// requested ones; a Bundle's entries are checked against the profiles
// they claim.
func (v *Validator) profileIssues(doc map[string]any, typ string, requested ...string) []outcome.Issue {
	issues := v.profiles.Validate(doc, typ, requested...)
	if entries, ok := doc["entry"].([]any); ok && typ == "Bundle" {
		for i, e := range entries {
			em, _ := e.(map[string]any)
			if r, ok := em["resource"].(map[string]any); ok {
				issues = append(issues, v.profiles.Validate(r, fmt.Sprintf("Bundle.entry[%d].resource", i))...)
			}
		}
	}
	return issues
}

// Check is $validate: the issues of body as a resource of typ ("" any
// type), warnings included: R4 structure, the profiles it claims that the
// gateway knows, and the requested profiles (each one Resolve accepts).
// valid is false when an issue is an error.
func (v *Validator) Check(body []byte, typ string, profiles ...string) (valid bool, issues []outcome.Issue) {
	var res *r4.Result
	if typ != "" {
		res = v.r4.ValidateAs(body, typ)
	} else {
		res = v.r4.Validate(body)
	}
	issues = outcome.FHIRIssues(res)
	if m, err := decodeJSON(body); err == nil {
		rt, _ := m["resourceType"].(string)
		if typ != "" {
			rt = typ
		}
		issues = append(issues, v.profileIssues(m, rt, profiles...)...)
	}
	valid = !slices.ContainsFunc(issues, func(i outcome.Issue) bool { return i.Severity == "error" || i.Severity == "fatal" })
	return valid, issues
}

// Mapped checks a resource the gateway itself produced (raw, of typ) and
// returns it decoded (numbers kept exact) from the same parse. A failure
// is the gateway's bug, not the client's: the error is Internal and names
// the first rule broken, never a value.
func (v *Validator) Mapped(raw []byte, typ string) (map[string]any, error) {
	r, decoded := v.r4.ValidateDecoded(raw, typ)
	if !r.Valid() {
		rule := ""
		if is := outcome.FHIRIssues(r); len(is) > 0 {
			rule = is[0].Rule
		}
		return nil, fmt.Errorf("mapped %s breaks FHIR rule %q", typ, rule)
	}
	m, _ := decoded.(map[string]any)
	return m, nil
}

// decodeJSON decodes a resource keeping numbers exact.
func decodeJSON(doc []byte) (map[string]any, error) {
	// The R4 reader ignores a UTF-8 byte order mark (RFC 8259 §8.1), and
	// so does the decoding of what it found valid.
	return fhirwire.Decode(bytes.TrimPrefix(doc, []byte("\xEF\xBB\xBF")))
}

// DecodeResource decodes a resource the way the engine stores it (numbers
// kept exact).
func DecodeResource(doc []byte) (map[string]any, error) { return decodeJSON(doc) }
