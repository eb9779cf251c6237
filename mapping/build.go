package mapping

import (
	"encoding/json"
	"strconv"

	fhir "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

// Small constructors for the FHIR datatypes the mappings build. They keep the
// mappers readable and make sure every Coding comes from the code table.

func ptr[T any](v T) *T { return &v }

// strp returns nil for "", so optional native fields drop out of the output.
func strp(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// coding returns the table row for key as a Coding.
func coding(key string) fhir.Coding {
	c := concept(key)
	return fhir.Coding{System: ptr(c.System), Code: ptr(c.Code), Display: ptr(c.Display)}
}

// cc returns a CodeableConcept with the codings of keys and text (text
// defaults to the first coding's display, so code.text is always set).
func cc(text string, keys ...string) fhir.CodeableConcept {
	out := fhir.CodeableConcept{}
	for _, k := range keys {
		out.Coding = append(out.Coding, coding(k))
	}
	if text == "" && len(keys) > 0 {
		text = concept(keys[0]).Display
	}
	out.Text = strp(text)
	return out
}

// decimal renders a float as a FHIR decimal with no exponent and no
// trailing zeros beyond what the value needs.
func decimal(v float64) *json.Number {
	n := json.Number(strconv.FormatFloat(v, 'f', -1, 64))
	return &n
}

// quantity is a UCUM quantity; unit is the human-readable unit.
func quantity(v float64, unit, code string) *fhir.Quantity {
	return &fhir.Quantity{Value: decimal(v), Unit: ptr(unit), System: ptr(SystemUCUM), Code: ptr(code)}
}

// literal is a reference to a resource in the same Bundle (urn:uuid fullUrl).
func literal(fullURL string) fhir.Reference { return fhir.Reference{Reference: ptr(fullURL)} }

// logical is a reference by identifier to a resource the Bundle does not
// carry (a record sent separately, a clinician). It is valid whether or not
// the receiving server holds the target.
func logical(resourceType string, id ident, display string) fhir.Reference {
	return fhir.Reference{
		Type:       ptr(resourceType),
		Identifier: &fhir.Identifier{System: ptr(id.System), Value: ptr(id.Value)},
		Display:    strp(display),
	}
}

// identifier renders an ident, with use=official.
func identifier(id ident) fhir.Identifier {
	return fhir.Identifier{Use: ptr(fhir.IdentifierUseOfficial), System: ptr(id.System), Value: ptr(id.Value)}
}

// meta carries the gateway's profile(s) and the sensitivity labels every
// resource gets: psychiatric information (PSY), restricted confidentiality (R).
func meta(profiles ...string) *fhir.Meta {
	return &fhir.Meta{Profile: profiles, Security: []fhir.Coding{coding("security.PSY"), coding("security.R")}}
}

// profile is the canonical URL of one of the gateway's profiles.
func profile(name string) string { return Canonical + "/StructureDefinition/" + name }

// extension URLs the gateway defines.
func extensionURL(name string) string { return Canonical + "/StructureDefinition/" + name }

// annotation is a note with text only.
func annotation(text string) []fhir.Annotation {
	if text == "" {
		return nil
	}
	return []fhir.Annotation{{Text: text}}
}
