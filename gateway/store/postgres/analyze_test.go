package postgres

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/storetest"
)

// TestSearchAfterBulkLoad loads 20,000 Observations of four tenants into a
// fresh database, in transactions of 500 (the statistics are gathered in
// the background as the load goes) and in one transaction (before Write
// returns), and searches them at once. Autovacuum is off for the tables:
// the store's own ANALYZE must keep the plans right. Without it, the
// search by code and subject takes longer than the 5s statement timeout
// here (30s in production) instead of milliseconds.
func TestSearchAfterBulkLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 20,000 resources twice")
	}
	testURL(t)
	for _, perTx := range []int{500, 20000} {
		t.Run(fmt.Sprint(perTx, "PerTx"), func(t *testing.T) {
			s, _ := openFresh(t, Options{StatementTimeout: 5 * time.Second})
			for _, tbl := range analyzeTables {
				if _, err := s.pool.Exec(context.Background(), `ALTER TABLE `+tbl+` SET (autovacuum_enabled = off)`); err != nil {
					t.Fatal(err)
				}
			}
			storetest.SearchAfterBulkLoad(t, s, perTx, "clinic-a", "clinic-b", "clinic-c", "clinic-d")
		})
	}
}
