package search

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// auditEventDoc is an AuditEvent as the gateway records a read.
const auditEventDoc = `{"resourceType":"AuditEvent","action":"R","agent":[{"network":{"address":"127.0.0.1","type":"2"},"requestor":true,"type":{"coding":[{"code":"110153","display":"Source Role ID","system":"http://dicom.nema.org/resources/ontology/DCM"}]},"who":{"display":"anonymous (development mode)"}},{"requestor":false,"type":{"coding":[{"code":"110152","display":"Destination Role ID","system":"http://dicom.nema.org/resources/ontology/DCM"}]},"who":{"display":"ketamine-gateway@vm"}}],"entity":[{"role":{"code":"1","display":"Patient","system":"http://terminology.hl7.org/CodeSystem/object-role"},"type":{"code":"1","display":"Person","system":"http://terminology.hl7.org/CodeSystem/audit-entity-type"},"what":{"reference":"Patient/01a23708f670d1386e2881f6ae8dc995"}},{"description":"the request","type":{"code":"2","display":"System Object","system":"http://terminology.hl7.org/CodeSystem/audit-entity-type"},"what":{"identifier":{"system":"https://ketamine-gateway.org/fhir/sid/request-id","value":"30a23d10cb7b72e001347251a4aa741a"}}}],"extension":[{"url":"https://ketamine-gateway.org/fhir/StructureDefinition/trace-id","valueString":"30a23d10cb7b72e001347251a4aa741a"}],"id":"01a23708f6932e5997d59f26c66145ba","meta":{"lastUpdated":"2026-12-02T13:54:24.019Z","versionId":"1"},"outcome":"0","outcomeDesc":"HTTP 200 OK","recorded":"2026-12-02T13:54:24.019Z","source":{"observer":{"display":"ketamine-gateway@vm"},"type":[{"code":"4","display":"Application Server","system":"http://terminology.hl7.org/CodeSystem/security-source-type"}]},"subtype":[{"code":"read","display":"read","system":"http://hl7.org/fhir/restful-interaction"}],"type":{"code":"rest","display":"RESTful Operation","system":"http://terminology.hl7.org/CodeSystem/audit-event-type"}}`

// BenchmarkExtractAuditEvent: the index entries of the AuditEvent every
// audited request writes.
func BenchmarkExtractAuditEvent(b *testing.B) {
	var doc map[string]any
	if err := json.Unmarshal([]byte(auditEventDoc), &doc); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if len(Extract("AuditEvent", doc)) == 0 {
			b.Fatal("no entries")
		}
	}
}

// BenchmarkExtractSynthea: the index entries of every resource of the
// Synthea Bundles in ../shared/testdata (skipped without them).
func BenchmarkExtractSynthea(b *testing.B) {
	dir := sharedDir()
	if dir == "" {
		b.Skip("../shared/testdata not present")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "synthea", "*.json"))
	if len(files) == 0 {
		b.Skip("../shared/testdata/synthea not present")
	}
	var docs []map[string]any
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		var bundle struct {
			Entry []struct{ Resource map[string]any }
		}
		if err := json.Unmarshal(raw, &bundle); err != nil {
			b.Fatal(err)
		}
		for _, e := range bundle.Entry {
			docs = append(docs, e.Resource)
		}
	}
	b.ReportAllocs()
	for b.Loop() { // b.Loop starts the timer afresh: the loading is not measured
		for _, d := range docs {
			rt, _ := d["resourceType"].(string)
			Extract(rt, d)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(docs)), "ns/resource")
}

// BenchmarkNormalize: the string folding of every string and token text
// entry, on ASCII text (most index rows) and on accented names.
func BenchmarkNormalize(b *testing.B) {
	for _, bc := range []struct{ name, in string }{
		{"ascii", "Source Role ID"},
		{"latin", "José Müller-Straße"},
		{"vietnamese", "Nguyễn Thị Ánh"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Normalize(bc.in)
			}
		})
	}
}
