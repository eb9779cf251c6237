package engine

import (
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/conformance"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/profile"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// TestPublishedTypes: every type of a conformance resource the gateway
// publishes is read-only for clients and read by every tenant (Seed
// stores them in the default tenant).
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
		if !publishedTypes[r.ResourceType] || !sharedTypes[r.ResourceType] || clientWritable(r.ResourceType) == nil {
			t.Errorf("%s: published %v, shared %v, writable %v", r.ResourceType, publishedTypes[r.ResourceType],
				sharedTypes[r.ResourceType], clientWritable(r.ResourceType) == nil)
		}
		if !visible("tenant-a", r.ResourceType, "") {
			t.Errorf("%s/%s is not visible to another tenant", r.ResourceType, r.ID)
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
}
