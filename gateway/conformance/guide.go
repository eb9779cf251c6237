package conformance

import (
	"github.com/ketamine-gateway/ketamine-gateway/gateway/profile"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// The ImplementationGuide and the NPM package that carry the conformance
// resources.
const (
	// GuideID is the ImplementationGuide's id.
	GuideID = "ketamine-gateway"
	// GuideURL is the ImplementationGuide's canonical url.
	GuideURL = mapping.Canonical + "/ImplementationGuide/" + GuideID
	// PackageName is the FHIR NPM package's name (and the guide's packageId).
	PackageName = "ketamine-gateway.fhir"
	// guideDescription says what the guide is.
	guideDescription = "The conformance resources of the ketamine-therapy FHIR gateway: the profiles of the resources it maps " +
		"from clinic records (StructureDefinitions with differential and snapshot), the extensions they carry, the ValueSets " +
		"and CodeSystems they bind, the SearchParameters and OperationDefinitions the gateway adds to R4. The version is the " +
		"gateway's mapping version: the profiles describe its output."
)

// ImplementationGuide is the part of an R4 ImplementationGuide the gateway
// writes (implementationguide.html).
type ImplementationGuide struct {
	ResourceType string          `json:"resourceType"`
	ID           string          `json:"id"`
	URL          string          `json:"url"`
	Version      string          `json:"version"`
	Name         string          `json:"name"`
	Title        string          `json:"title"`
	Status       string          `json:"status"`
	Experimental bool            `json:"experimental"`
	Publisher    string          `json:"publisher"`
	Description  string          `json:"description"`
	PackageID    string          `json:"packageId"`
	FHIRVersion  []string        `json:"fhirVersion"`
	Definition   GuideDefinition `json:"definition"`
}

// GuideDefinition lists the guide's resources.
type GuideDefinition struct {
	Resource []GuideResource `json:"resource"`
}

// GuideResource is one resource of the guide.
type GuideResource struct {
	Reference      GuideReference `json:"reference"`
	Name           string         `json:"name,omitempty"`
	Description    string         `json:"description,omitempty"`
	ExampleBoolean bool           `json:"exampleBoolean"`
}

// GuideReference is a relative reference to a resource of the guide.
type GuideReference struct {
	Reference string `json:"reference"`
}

// guide is the ImplementationGuide listing resources.
func guide(resources []Resource) ImplementationGuide {
	ig := ImplementationGuide{ResourceType: "ImplementationGuide", ID: GuideID, URL: GuideURL, Version: mapping.Version,
		Name: "KetamineGateway", Title: "Ketamine-therapy gateway implementation guide", Status: "active",
		Publisher: profile.Publisher, Description: guideDescription, PackageID: PackageName, FHIRVersion: []string{"4.0.1"}}
	for _, r := range resources {
		name := r.Title
		if name == "" {
			name = r.Name
		}
		ig.Definition.Resource = append(ig.Definition.Resource, GuideResource{
			Reference: GuideReference{Reference: r.ResourceType + "/" + r.ID}, Name: name, Description: r.Description})
	}
	return ig
}
