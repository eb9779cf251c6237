package engine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
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
// list). A body that is not a Parameters resource, or a parameter without
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
	var p struct {
		ResourceType string                       `json:"resourceType"`
		Parameter    []map[string]json.RawMessage `json:"parameter"`
	}
	if err := json.Unmarshal(body, &p); err != nil || p.ResourceType != "Parameters" {
		return nil, outcome.New(outcome.Invalid, "structure", "operation-parameters-invalid",
			"the body of POST $everything must be a Parameters resource (or empty), with _count, _offset, _since or _type")
	}
	var types []string
	for i, x := range p.Parameter {
		where := fmt.Sprintf("Parameters.parameter[%d]", i)
		var name string
		if json.Unmarshal(x["name"], &name) != nil || name == "" {
			return nil, outcome.New(outcome.Invalid, "required", "operation-parameters-invalid",
				"a parameter has no name").At(where + ".name")
		}
		keys := map[string]bool{}
		switch name {
		case "_count", "_offset":
			keys["valueInteger"], keys["valuePositiveInt"], keys["valueUnsignedInt"] = true, true, true
		case "_since":
			keys["valueInstant"], keys["valueDateTime"] = true, true
		case "_type":
			keys["valueCode"], keys["valueString"] = true, true
		default:
			// Not a parameter of $everything: Everything names it.
			keys[""] = true
		}
		var value string
		found := false
		for k, raw := range x {
			if k == "name" || k == "id" || k == "extension" {
				continue
			}
			if !keys[k] {
				if keys[""] {
					continue
				}
				return nil, outcome.New(outcome.Invalid, "value", "operation-parameters-invalid",
					"the "+name+" parameter of $everything takes "+expectedValues(name)).At(where + "." + k)
			}
			var n json.Number
			var s string
			switch {
			case json.Unmarshal(raw, &s) == nil:
				value = s
			case json.Unmarshal(raw, &n) == nil:
				value = n.String()
			default:
				return nil, outcome.New(outcome.Invalid, "value", "operation-parameters-invalid",
					"the "+name+" parameter of $everything takes "+expectedValues(name)).At(where + "." + k)
			}
			found = true
		}
		if !found && !keys[""] {
			return nil, outcome.New(outcome.Invalid, "required", "operation-parameters-invalid",
				"the "+name+" parameter has no value: it takes "+expectedValues(name)).At(where)
		}
		if name == "_type" {
			types = append(types, value)
			continue
		}
		if name == "_count" || name == "_offset" {
			if _, err := strconv.Atoi(value); err != nil {
				return nil, outcome.New(outcome.Invalid, "value", "operation-parameters-invalid",
					"the "+name+" parameter of $everything takes "+expectedValues(name)).At(where)
			}
		}
		out[name] = append(out[name], value)
	}
	if len(types) > 0 {
		out["_type"] = append(out["_type"], strings.Join(types, ","))
	}
	return out, nil
}

// expectedValues says which value[x] a parameter of $everything takes.
func expectedValues(name string) string {
	switch name {
	case "_count", "_offset":
		return "a valueInteger"
	case "_since":
		return "a valueInstant"
	default:
		return "a valueCode (a resource type; the parameter repeated for several)"
	}
}
