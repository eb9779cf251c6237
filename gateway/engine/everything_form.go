package engine

import (
	"bytes"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
)

// EverythingParameters reads the Parameters body of POST
// Patient/{id}/$everything (operations.html: an operation that changes
// nothing may be invoked with GET or with POST and a Parameters body) into
// the query parameters Everything takes, added to query (the URL's). An
// empty body is no parameters. Each parameter takes the value type of the
// gateway's OperationDefinition (EverythingURL): _count and _offset an
// integer, _since an instant, _type a code or string (repeated, or a comma
// list), start and end a date. A body that is not a Parameters resource, or a parameter without
// such a value, is Invalid operation-parameters-invalid naming it; a name
// $everything does not take is then Everything's to refuse, as in a URL.
func (e *Engine) EverythingParameters(query url.Values, body []byte) (url.Values, error) {
	out := url.Values{}
	for k, vs := range query {
		out[k] = append([]string(nil), vs...)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return out, nil
	}
	doc, verr := e.v.Decoded(body, "Parameters") // R4's structure: one value[x], a name
	if verr != nil {
		if d, err := decodeJSON(body); err == nil && d["resourceType"] == "Parameters" {
			return nil, verr // a Parameters R4 refuses: its own issues, naming the element
		}
		return nil, outcome.New(outcome.Invalid, "structure", "operation-parameters-invalid",
			"the body of POST $everything must be a Parameters resource (or empty), with start, end, _since, _type, _count or _offset")
	}
	params, _ := doc["parameter"].([]any)
	var types []string
	for i, p := range params {
		pp, _ := p.(map[string]any)
		where := fmt.Sprintf("Parameters.parameter[%d]", i)
		name, _ := pp["name"].(string)
		takes, known := everythingValues[name]
		if !known {
			out[name] = append(out[name], "") // not a parameter of $everything: Everything names it
			continue
		}
		v, suffix, ok := partValue(pp)
		if !ok {
			return nil, outcome.New(outcome.Invalid, "required", "operation-parameters-invalid",
				"the "+name+" parameter has no value: it takes "+expectedValues(name)).At(where)
		}
		if !slices.Contains(takes, suffix) {
			return nil, outcome.New(outcome.Invalid, "value", "operation-parameters-invalid",
				"the "+name+" parameter of $everything takes "+expectedValues(name)).At(where + ".value" + suffix)
		}
		value := fmt.Sprint(v) // a string, or a json.Number of an integer R4 checked
		if name == "_type" {
			types = append(types, value)
			continue
		}
		out[name] = append(out[name], value)
	}
	if len(types) > 0 {
		out["_type"] = append(out["_type"], strings.Join(types, ","))
	}
	return out, nil
}

// everythingValues are the value[x] types each parameter of $everything
// takes (its OperationDefinition's, and those R4 derives from them).
var everythingValues = map[string][]string{
	"_count":  {"Integer", "PositiveInt", "UnsignedInt"},
	"_offset": {"Integer", "PositiveInt", "UnsignedInt"},
	"_since":  {"Instant", "DateTime"},
	"_type":   {"Code", "String"},
	"start":   {"Date", "DateTime"},
	"end":     {"Date", "DateTime"},
}

// expectedValues says which value[x] a parameter of $everything takes.
func expectedValues(name string) string {
	switch name {
	case "_count", "_offset":
		return "a valueInteger"
	case "_since":
		return "a valueInstant"
	case "start", "end":
		return "a valueDate"
	default:
		return "a valueCode (a resource type; the parameter repeated for several)"
	}
}
