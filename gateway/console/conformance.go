package console

import (
	"encoding/json"
	"net/url"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/conformance"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
)

// published is one conformance resource as the console lists it.
type published struct {
	Type, ID, URL, Title, Description string
	JSON                              string
}

// conformancePage lists the profiles, extensions and value sets the
// gateway publishes (docs/conformance.md), each with its JSON, so the
// playground can link the profiles and systems a mapped Bundle uses.
func (c *Console) conformancePage(rq *request) error {
	all, err := conformance.All(c.app.Engine.Validator().ProfileSet())
	if err != nil {
		return err
	}
	var out []published
	for _, r := range all {
		if r.ResourceType != "StructureDefinition" && r.ResourceType != "ValueSet" {
			continue
		}
		pretty, err := fhirwire.MarshalIndent(json.RawMessage(r.JSON))
		if err != nil {
			return err
		}
		title := r.Title
		if title == "" {
			title = r.Name
		}
		out = append(out, published{Type: r.ResourceType, ID: r.ID, URL: r.URL, Title: title, Description: r.Description,
			JSON: string(pretty)})
	}
	return rq.render("conformance", "Profiles and value sets", out)
}

// conformanceURL links a published canonical (a profile, an extension, a
// value set) to its entry on the conformance page; "" for any other URL.
func conformanceURL(canonical string) string {
	for _, kind := range []string{"/StructureDefinition/", "/ValueSet/"} {
		if id, ok := strings.CutPrefix(canonical, conformanceBase+kind); ok && id != "" {
			return Prefix + "/conformance#" + url.PathEscape(id)
		}
	}
	return ""
}

// conformanceBase is the canonical base of what the gateway publishes.
const conformanceBase = "https://ketamine-gateway.org/fhir"
