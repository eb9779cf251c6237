package postgres

import (
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/storetest"
)

func benchmarkPut(b *testing.B, perTx, writers int) {
	s, _ := openFresh(b, Options{MaxConns: int32(max(writers, 4))})
	storetest.BenchmarkPut(b, s, perTx, writers)
}

// BenchmarkPut measures durable commits (synchronous_commit on, the
// server's default) as BenchmarkPut of the SQLite backend does: one
// resource per transaction, and 100 per transaction, from one writer; and
// one resource per transaction from 16 concurrent writers (several
// replicas, or one busy replica), which SQLite cannot run in parallel.
func BenchmarkPut(b *testing.B) {
	testURL(b)
	b.Run("1PerTx", func(b *testing.B) { benchmarkPut(b, 1, 1) })
	b.Run("100PerTx", func(b *testing.B) { benchmarkPut(b, 100, 1) })
	b.Run("1PerTx16Writers", func(b *testing.B) { benchmarkPut(b, 1, 16) })
}

// BenchmarkSearch runs storetest.BenchmarkSearch on a fresh database.
func BenchmarkSearch(b *testing.B) {
	testURL(b)
	s, _ := openFresh(b, Options{})
	storetest.BenchmarkSearch(b, s)
}

// BenchmarkSearchTenants runs storetest.BenchmarkSearch with the
// resources of four tenants.
func BenchmarkSearchTenants(b *testing.B) {
	testURL(b)
	s, _ := openFresh(b, Options{})
	storetest.BenchmarkSearch(b, s, "clinic-a", "clinic-b", "clinic-c", "clinic-d")
}

// BenchmarkDateSort runs storetest.BenchmarkDateSort on a fresh database.
func BenchmarkDateSort(b *testing.B) {
	testURL(b)
	s, _ := openFresh(b, Options{})
	storetest.BenchmarkDateSort(b, s)
}
