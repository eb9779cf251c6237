package sqlite

import (
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/storetest"
)

// BenchmarkSearch runs storetest.BenchmarkSearch on a fresh database.
func BenchmarkSearch(b *testing.B) {
	s, _ := openTemp(b, Options{})
	defer s.Close()
	storetest.BenchmarkSearch(b, s)
}

// BenchmarkSearchTenants runs storetest.BenchmarkSearch with the
// resources of four tenants.
func BenchmarkSearchTenants(b *testing.B) {
	s, _ := openTemp(b, Options{})
	defer s.Close()
	storetest.BenchmarkSearch(b, s, "clinic-a", "clinic-b", "clinic-c", "clinic-d")
}

func BenchmarkClaim(b *testing.B) {
	s, _ := openTemp(b, Options{})
	storetest.BenchmarkClaim(b, s)
}

// BenchmarkDateSort runs storetest.BenchmarkDateSort on a fresh database.
func BenchmarkDateSort(b *testing.B) {
	s, _ := openTemp(b, Options{})
	defer s.Close()
	storetest.BenchmarkDateSort(b, s)
}
