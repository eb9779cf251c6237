package postgres

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/storetest"
)

func benchmarkPut(b *testing.B, perTx, writers int) {
	s, _ := openFresh(b, Options{MaxConns: int32(max(writers, 4))})
	ctx := context.Background()
	body := []byte(`{"resourceType":"Observation","id":"x","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"valueQuantity":{"value":72,"unit":"/min"}}`)
	entries := []search.Entry{
		{Param: "code", Type: search.TypeToken, System: "http://loinc.org", Code: "8867-4", Text: "heart rate"},
		{Param: "status", Type: search.TypeToken, Code: "final"},
		{Param: "subject", Type: search.TypeReference, RefType: "Patient", RefID: "p1"},
		{Param: "date", Type: search.TypeDate, Low: time.Now(), High: time.Now()},
		{Param: "value-quantity", Type: search.TypeQuantity, Number: 72, System: "http://unitsofmeasure.org", Code: "/min"},
	}
	b.ResetTimer()
	var n int64
	var ids atomic.Int64
	put := func() error {
		return s.Write(ctx, func(tx store.Tx) error {
			for range perTx {
				r := &store.Resource{Type: "Observation", ID: fmt.Sprint(ids.Add(1)), Version: 1, Body: body}
				if err := tx.Put(r, entries); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if writers <= 1 {
		for b.Loop() {
			if err := put(); err != nil {
				b.Fatal(err)
			}
			n += int64(perTx)
		}
	} else {
		b.SetParallelism(max(1, writers/runtime.GOMAXPROCS(0)))
		total := make(chan int64, 1024)
		b.RunParallel(func(pb *testing.PB) {
			var mine int64
			for pb.Next() {
				if err := put(); err != nil {
					b.Error(err)
					return
				}
				mine += int64(perTx)
			}
			total <- mine
		})
		close(total)
		for m := range total {
			n += m
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "resources/s")
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
