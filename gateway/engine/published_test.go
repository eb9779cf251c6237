package engine

import (
	"slices"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/conformance"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/profile"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// TestPublishedTypes: every type of a conformance resource the gateway
// publishes is read-only for clients and read by every tenant (Seed
// stores them in the default tenant); no other type is shared, and no
// other tenant's resource of these types.
func TestPublishedTypes(t *testing.T) {
	all, err := conformance.All(profile.MustNew())
	if err != nil {
		t.Fatal(err)
	}
	if len(all) == 0 {
		t.Fatal("conformance.All published nothing")
	}
	seen := map[string]bool{}
	for _, r := range all {
		seen[r.ResourceType] = true
		if !publishedTypes[r.ResourceType] || !slices.Contains(sharedTypes, r.ResourceType) || clientWritable(r.ResourceType) == nil {
			t.Errorf("%s: published %v, shared %v, writable %v", r.ResourceType, publishedTypes[r.ResourceType],
				slices.Contains(sharedTypes, r.ResourceType), clientWritable(r.ResourceType) == nil)
		}
		if !visible("tenant-a", r.ResourceType, "") {
			t.Errorf("%s/%s is not visible to another tenant", r.ResourceType, r.ID)
		}
		// What another tenant holds of a published type (a client of it
		// wrote it before these types were read-only) is that tenant's.
		if visible("tenant-a", r.ResourceType, "tenant-b") {
			t.Errorf("tenant-b's %s is visible to tenant-a", r.ResourceType)
		}
		if _, ok := search.Lookup(r.ResourceType, "url"); !ok {
			t.Errorf("%s cannot be searched by url", r.ResourceType)
		}
	}
	// And the other way: publishedTypes names only types published.
	for typ := range publishedTypes {
		if !seen[typ] {
			t.Errorf("publishedTypes has %s, of which the gateway publishes nothing", typ)
		}
	}
	// The conformance types clients write are their tenants' (probe 5 F4).
	for _, typ := range []string{"ConceptMap", "NamingSystem", "CapabilityStatement"} {
		if visible("tenant-a", typ, "") || visible("tenant-a", typ, "tenant-b") || slices.Contains(sharedTypes, typ) {
			t.Errorf("%s of another tenant is visible to tenant-a", typ)
		}
	}
}
