package fhirwire

import "encoding/json"

// Warnings counts the issues of severity warning in a FHIR server's
// answer: an OperationOutcome's, or those of a Bundle's entries'
// outcomes (a transaction or batch response); 0 for an answer that is
// not JSON. Delivery logs the count of an EHR's answer, never its texts;
// the operator's view of an attempt shows it.
func Warnings(raw []byte) int {
	type oo struct {
		ResourceType string `json:"resourceType"`
		Issue        []struct {
			Severity string `json:"severity"`
		} `json:"issue"`
	}
	var r struct {
		oo
		Entry []struct {
			Response struct {
				Outcome *oo `json:"outcome"`
			} `json:"response"`
		} `json:"entry"`
	}
	if len(raw) == 0 || json.Unmarshal(raw, &r) != nil {
		return 0
	}
	count := func(o *oo) int {
		n := 0
		for _, i := range o.Issue {
			if i.Severity == "warning" {
				n++
			}
		}
		return n
	}
	if r.ResourceType == "OperationOutcome" {
		return count(&r.oo)
	}
	n := 0
	for _, e := range r.Entry {
		if e.Response.Outcome != nil {
			n += count(e.Response.Outcome)
		}
	}
	return n
}
