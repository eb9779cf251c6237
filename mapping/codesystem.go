package mapping

import (
	fhir "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

// CodeSystems returns the gateway's own CodeSystem resources: the local
// concepts of the code table (scales without LOINC codes, time points,
// reasons, actions) and the catalogue of clinical rule ids.
func CodeSystems() []fhir.CodeSystem {
	local := fhir.CodeSystem{
		Id:            ptr("ketamine-gateway"),
		Url:           ptr(SystemLocal),
		Version:       ptr(Version),
		Name:          ptr("KetamineGateway"),
		Title:         ptr("Ketamine-therapy gateway local codes"),
		Status:        fhir.PublicationStatusActive,
		Experimental:  ptr(false),
		Publisher:     ptr("ketamine-gateway project"),
		Description:   ptr("Concepts the ketamine-therapy gateway needs that have no standard code: rating scales without LOINC codes (MADRS, QIDS-SR16, CADSS, MOAA/S) and their items and answer scores, severity bands, C-SSRS screener risk levels, monitoring time points, reasons a session stopped, actions taken for adverse events, safety flags."),
		CaseSensitive: ptr(true),
		Content:       fhir.CodeSystemContentModeComplete,
	}
	for _, c := range table.rows {
		if c.System == SystemLocal {
			local.Concept = append(local.Concept, fhir.CodeSystemConcept{Code: c.Code, Display: ptr(c.Display)})
		}
	}
	local.Count = ptr(len(local.Concept))
	return []fhir.CodeSystem{local}
}
