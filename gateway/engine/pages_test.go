package engine

import (
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestHistoryEntry: a history entry shows the method and status the store
// kept for its version; a version stored before the stores kept them is
// shown as it was before (a deletion DELETE, version 1 POST, later PUT).
func TestHistoryEntry(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name        string
		r           store.Resource
		method, url string
		status      string
		resource    bool
	}{
		{"POST", store.Resource{Version: 1, Method: "POST", Status: 201}, "POST", "Patient", "201", true},
		{"update-as-create", store.Resource{Version: 1, Method: "PUT", Status: 201}, "PUT", "Patient/p", "201", true},
		{"update", store.Resource{Version: 2, Method: "PUT", Status: 200}, "PUT", "Patient/p", "200", true},
		{"PUT after a deletion", store.Resource{Version: 3, Method: "PUT", Status: 201}, "PUT", "Patient/p", "201", true},
		{"POST after a deletion", store.Resource{Version: 3, Method: "POST", Status: 201}, "POST", "Patient", "201", true},
		{"PATCH", store.Resource{Version: 2, Method: "PATCH", Status: 200}, "PATCH", "Patient/p", "200", true},
		{"DELETE", store.Resource{Version: 2, Deleted: true, Method: "DELETE", Status: 204}, "DELETE", "Patient/p", "204", false},
		{"stored before: version 1", store.Resource{Version: 1}, "POST", "Patient", "201", true},
		{"stored before: version 2", store.Resource{Version: 2}, "PUT", "Patient/p", "200", true},
		{"stored before: deletion", store.Resource{Version: 2, Deleted: true}, "DELETE", "Patient/p", "204", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.r
			r.Type, r.ID, r.LastUpdated = "Patient", "p", at
			if !r.Deleted {
				r.Body = []byte(`{"resourceType":"Patient","id":"p"}`)
			}
			e := historyEntry("http://gw/fhir", &r)
			if e.Request.Method != tc.method || e.Request.URL != tc.url || e.Response.Status != tc.status {
				t.Errorf("historyEntry(%+v) = %s %s %s, want %s %s %s", tc.r, e.Request.Method, e.Request.URL,
					e.Response.Status, tc.method, tc.url, tc.status)
			}
			if (e.Resource != nil) != tc.resource || e.FullURL != "http://gw/fhir/Patient/p" {
				t.Errorf("historyEntry: resource %v fullUrl %s", e.Resource != nil, e.FullURL)
			}
		})
	}
}
