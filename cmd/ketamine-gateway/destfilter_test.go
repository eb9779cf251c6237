package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
)

// TestDestinationFilterKinds: a filter.kinds entry that is no record kind
// (it would never match) is refused, listing the kinds.
func TestDestinationFilterKinds(t *testing.T) {
	cfg := writeTemp(t, "c.json", `{"destinations":[{"name":"x","baseUrl":"http://127.0.0.1:1/fhir","filter":{"kinds":["assessment","asessment"]}}]}`)
	wantCLI(t, []string{"serve", "--addr", "127.0.0.1:0", "--db", filepath.Join(t.TempDir(), "kg.db"), "--config", cfg}, exitUsage,
		"--config "+cfg+`: destinations[0]: filter.kinds[1]: "asessment" is not a record kind, so it would never match: the kinds are `+kindList())
}

// TestUnmatchedFilterTenants: a destination's filter.tenants entry that no
// client belongs to and no issuer names is listed (serve warns), unless an
// issuer may name any tenant; in development mode only the default tenant
// matches.
func TestUnmatchedFilterTenants(t *testing.T) {
	dests := []destinationConfig{{Name: "hosp-a"}, {Name: "hosp-b"}}
	dests[0].Filter.Tenants = []string{"clinic-a"}
	dests[1].Filter.Tenants = []string{"clinic-aa", "clinic-b"}
	clients := &auth.Config{Clients: []auth.Client{{ID: "a", Tenant: "clinic-a"}, {ID: "b", Tenant: "clinic-b"}}}
	for _, tc := range []struct {
		name string
		auth *auth.Config
		want string
	}{
		{"clients", clients, `[hosp-b: "clinic-aa"]`},
		{"an issuer's tenants", &auth.Config{External: []auth.ExternalIssuer{{Tenants: []string{"clinic-a", "clinic-aa", "clinic-b"}}}}, `[]`},
		{"an issuer of any tenant", &auth.Config{External: []auth.ExternalIssuer{{}}}, `[]`},
		{"development mode", nil, `[hosp-a: "clinic-a" hosp-b: "clinic-aa" hosp-b: "clinic-b"]`},
	} {
		if got := fmt.Sprint(unmatchedFilterTenants(&fileConfig{Auth: tc.auth, Destinations: dests})); got != tc.want && !(tc.want == "[]" && got == "[]") {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
	// serve says so when it starts.
	cfg := writeTemp(t, "c.json", `{"destinations":[{"name":"x","baseUrl":"http://127.0.0.1:1/fhir","filter":{"tenants":["nobody"]}}]}`)
	_, logs := serveUntilUp(t, filepath.Join(t.TempDir(), "kg.db"), "--config", cfg)
	if !strings.Contains(logs, `"level":"WARN","msg":"a delivery destination's filter.tenants names a tenant no configured client belongs to`) ||
		!strings.Contains(logs, `"destination_tenants":"x: \"nobody\""`) {
		t.Errorf("serve's log does not warn about the filter's tenant:\n%s", logs)
	}
}
