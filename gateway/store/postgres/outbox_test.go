package postgres

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestOutboxClaimsAcrossProcesses: 4 stores (as 4 gateway processes) claim
// and complete one destination's items at once: every item is claimed
// exactly once, and an item is never claimed while an earlier item of its
// order key is undelivered.
func TestOutboxClaimsAcrossProcesses(t *testing.T) {
	ctx := context.Background()
	first, u := openFresh(t, Options{})
	const keys, perKey = 10, 8
	err := first.Write(ctx, func(tx store.Tx) error {
		for v := range perKey {
			for k := range keys {
				it := &store.OutboxItem{Destination: "ehr", OrderKey: fmt.Sprint("k", k), Patient: "p", Kind: "session",
					Source: "s", RecordID: fmt.Sprint(k), Version: fmt.Sprint(v), Payload: []byte(`{}`)}
				if err := tx.(store.OutboxTx).Enqueue(it); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	claims := map[int64]int{}
	delivered := map[string]int{} // order key -> versions delivered, in order
	var wg sync.WaitGroup
	for w := range 4 {
		s := first
		if w > 0 {
			var err error
			if s, err = Open(ctx, u, Options{}); err != nil {
				t.Fatal(err)
			}
			defer s.Close()
		}
		wg.Go(func() {
			deadline := time.Now().Add(30 * time.Second)
			for time.Now().Before(deadline) {
				items, err := s.Claim(ctx, "ehr", time.Now(), time.Minute, 3)
				if err != nil {
					t.Errorf("claim: %v", err)
					return
				}
				mu.Lock()
				done := len(claims) == keys*perKey
				for _, it := range items {
					claims[it.ID]++
					if want := fmt.Sprint(delivered[it.OrderKey]); it.Version != want {
						t.Errorf("%s version %s claimed before version %s was delivered", it.OrderKey, it.Version, want)
					}
				}
				mu.Unlock()
				if done && len(items) == 0 {
					return
				}
				for _, it := range items {
					mu.Lock()
					delivered[it.OrderKey]++
					mu.Unlock()
					if err := s.Complete(ctx, &store.Attempt{ItemID: it.ID, At: time.Now(), HTTPStatus: 200}, store.StatusDone, time.Now()); err != nil {
						t.Errorf("complete %d: %v", it.ID, err)
					}
				}
			}
		})
	}
	wg.Wait()
	if len(claims) != keys*perKey {
		t.Errorf("%d items claimed, want %d", len(claims), keys*perKey)
	}
	for id, n := range claims {
		if n != 1 {
			t.Errorf("item %d claimed %d times", id, n)
		}
	}
}
