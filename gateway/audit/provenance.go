package audit

import (
	"fmt"
	"time"
)

// Provenance codes and the gateway's extensions and identifier systems.
const (
	systemParticipant = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
	systemDataOp      = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
	// ExtContentHash carries "sha256:<hex>" of the source content a
	// Provenance entity stands for.
	ExtContentHash = "https://ketamine-gateway.org/fhir/StructureDefinition/content-hash"
	// SystemSource names clinic source systems in Provenance agents.
	SystemSource = "https://ketamine-gateway.org/fhir/sid/source-system"
	// SystemMappingVersion names the mapping version that assembled the
	// resources.
	SystemMappingVersion = "https://ketamine-gateway.org/fhir/sid/mapping-version"
	// ExtRecordKind and ExtRecordVersion carry a native record's kind and
	// version on its Provenance entity.
	ExtRecordKind    = "https://ketamine-gateway.org/fhir/StructureDefinition/record-kind"
	ExtRecordVersion = "https://ketamine-gateway.org/fhir/StructureDefinition/record-version"
)

// activityDisplay are the v3-DataOperation displays.
var activityDisplay = map[string]string{"CREATE": "create", "UPDATE": "revise", "DELETE": "delete", "EXECUTE": "execute"}

// Provenance describes where a set of resource versions came from: a
// native record the gateway mapped, or a Bundle a client posted.
type Provenance struct {
	ID       string
	Recorded time.Time
	// Targets are the resource versions written.
	Targets []Entity
	// Activity is a v3-DataOperation code: CREATE, UPDATE, DELETE or
	// EXECUTE (a Bundle of several).
	Activity string
	// Source is the clinic system of a native record ("" for a Bundle).
	Source string
	// MappingVersion is the mapping that assembled a native record.
	MappingVersion string
	// ClientID is the authenticated client that sent the content; ""
	// when anonymous (development mode).
	ClientID string
	// What identifies the source content: the native record's identifier
	// (system, value) or, for a Bundle, its identifier when it has one.
	WhatSystem, WhatValue string
	// WhatDisplay describes the content without PHI ("assessment record
	// version 3", "transaction Bundle").
	WhatDisplay string
	// RecordKind and RecordVersion are the native record's kind and
	// version ("" for a Bundle).
	RecordKind, RecordVersion string
	// ContentHash is the hex SHA-256 of the source content.
	ContentHash string
	TraceID     string
	// PreviousMappingVersion is, for resources a mapping replay corrected,
	// the mapping version that assembled the versions they replace (an
	// entity with role revision); Reason why they were corrected.
	PreviousMappingVersion string
	Reason                 string
}

// ProvenanceResource renders p as a Provenance resource (JSON-ready).
func ProvenanceResource(p Provenance) map[string]any {
	targets := make([]any, 0, len(p.Targets))
	for _, t := range p.Targets {
		ref := t.Type + "/" + t.ID
		if t.Version > 0 {
			ref = fmt.Sprintf("%s/_history/%d", ref, t.Version)
		}
		targets = append(targets, map[string]any{"reference": ref})
	}
	var agents []any
	if p.Source != "" {
		agents = append(agents, map[string]any{
			"type": cc(systemParticipant, "author", "Author"),
			"who": map[string]any{"identifier": map[string]any{"system": SystemSource, "value": p.Source},
				"display": "source system " + p.Source},
		})
	}
	if p.MappingVersion != "" {
		agents = append(agents, map[string]any{
			"type": cc(systemParticipant, "assembler", "Assembler"),
			"who": map[string]any{"identifier": map[string]any{"system": SystemMappingVersion, "value": p.MappingVersion},
				"display": "ketamine-gateway mapping " + p.MappingVersion},
		})
	}
	client := map[string]any{"display": "anonymous client (development mode)"}
	if p.ClientID != "" {
		client = map[string]any{"identifier": map[string]any{"system": SystemClient, "value": p.ClientID}}
	}
	agents = append(agents, map[string]any{"type": cc(systemParticipant, "enterer", "Enterer"), "who": client})
	what := map[string]any{"display": p.WhatDisplay}
	if p.WhatValue != "" {
		id := map[string]any{"value": p.WhatValue}
		if p.WhatSystem != "" {
			id["system"] = p.WhatSystem
		}
		what["identifier"] = id
	}
	entity := map[string]any{"role": "source", "what": what}
	var exts []any
	for _, x := range []struct{ url, v string }{
		{ExtRecordKind, p.RecordKind}, {ExtRecordVersion, p.RecordVersion}, {ExtContentHash, p.ContentHash},
	} {
		if x.v == "" {
			continue
		}
		if x.url == ExtContentHash {
			x.v = "sha256:" + x.v
		}
		exts = append(exts, map[string]any{"url": x.url, "valueString": x.v})
	}
	if exts != nil {
		entity["extension"] = exts
	}
	entities := []any{entity}
	if p.PreviousMappingVersion != "" {
		entities = append(entities, map[string]any{"role": "revision", "what": map[string]any{
			"identifier": map[string]any{"system": SystemMappingVersion, "value": p.PreviousMappingVersion},
			"display":    "ketamine-gateway mapping " + p.PreviousMappingVersion}})
	}
	doc := map[string]any{
		"resourceType": "Provenance",
		"target":       targets,
		"recorded":     p.Recorded.UTC().Format("2006-01-02T15:04:05.000Z"),
		"activity":     cc(systemDataOp, p.Activity, activityDisplay[p.Activity]),
		"agent":        agents,
		"entity":       entities,
	}
	if p.Reason != "" {
		doc["reason"] = []any{map[string]any{"text": p.Reason}}
	}
	if p.ID != "" {
		doc["id"] = p.ID
	}
	if p.TraceID != "" {
		doc["extension"] = []any{map[string]any{"url": ExtTraceID, "valueString": p.TraceID}}
	}
	return doc
}
