package gateway_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
)

// BenchmarkSearchLimitRefusal measures how long the gateway takes to
// refuse a search beyond its limits (TestSearchLimits's queries), through
// the real handler: the refusal comes before any query runs, so it should
// cost about as much as parsing the URL, whatever the database holds.
func BenchmarkSearchLimitRefusal(b *testing.B) {
	h, _ := sqliteServer(b, app.Config{})
	rep := func(kv string, n int) string { return strings.TrimSuffix(strings.Repeat(kv+"&", n), "&") }
	for _, tc := range []struct{ name, q string }{
		{"name-x300", rep("name=a", 300)},
		{"name-x1000", rep("name=a", 1000)},
		{"birthdate-x6", rep("birthdate=ge2000", 6)},
		{"id-list-101", "_id=" + strings.TrimSuffix(strings.Repeat("a,", 101), ",")},
		{"unknown-x40", rep("Jane+Doe=1", 40)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				if rec := req(h, "GET", "/fhir/Patient?"+tc.q, ""); rec.Code != http.StatusBadRequest {
					b.Fatalf("GET /fhir/Patient?%.30s… = %d, want 400", tc.q, rec.Code)
				}
			}
		})
	}
}
