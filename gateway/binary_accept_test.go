package gateway

import "testing"

// TestBinaryAccept: which Accept headers ask a Binary read for its own
// content (binary.html: a read that does not explicitly ask for a FHIR
// content type), and which content types they admit.
func TestBinaryAccept(t *testing.T) {
	for _, tc := range []struct {
		accept string
		fhir   bool
	}{
		{"application/fhir+json", true},
		{"application/json+fhir", true},
		{"application/json", true},
		{"text/json", true},
		{"application/fhir+xml", true},
		{"application/fhir+json;fhirVersion=4.0", true},
		{"text/plain, application/fhir+json;q=0.1", true},
		{"*/*", false},
		{"application/*", false},
		{"text/plain", false},
		{"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", false},
		{"application/fhir+json;q=0, */*", false},
	} {
		if got := fhirAsked(tc.accept); got != tc.fhir {
			t.Errorf("fhirAsked(%q) = %v, want %v", tc.accept, got, tc.fhir)
		}
	}
	for _, tc := range []struct {
		accept, contentType string
		ok                  bool
	}{
		{"text/plain", "text/plain", true},
		{"text/plain", "text/plain; charset=utf-8", true},
		{"text/*", "text/html", true},
		{"*/*", "application/pdf", true},
		{"image/png", "text/plain", false},
		{"*/*, text/plain;q=0", "text/plain", false},
	} {
		if got := acceptsType(tc.accept, tc.contentType); got != tc.ok {
			t.Errorf("acceptsType(%q, %q) = %v, want %v", tc.accept, tc.contentType, got, tc.ok)
		}
	}
	for _, tc := range []struct {
		contentType string
		attachment  bool
	}{
		{"text/plain", false},
		{"application/pdf", false},
		{"image/png", false},
		{"text/html", true},
		{"TEXT/HTML; charset=utf-8", true},
		{"application/xhtml+xml", true},
		{"image/svg+xml", true},
		{"text/xml", true},
		{"application/xml", true},
		{"application/cda+xml", true},
		{"application/javascript", true},
		{"text/javascript", true},
		{"not a type", true},
	} {
		if got := attachOnly(tc.contentType); got != tc.attachment {
			t.Errorf("attachOnly(%q) = %v, want %v", tc.contentType, got, tc.attachment)
		}
	}
}
