package engine

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// recordingTx is a store.Tx that records what is put, and writes ahead or
// not as told; nothing else of it may be called.
type recordingTx struct {
	store.Tx
	ahead bool
	mu    sync.Mutex
	puts  []*store.Resource
}

func (r *recordingTx) WritesAhead() bool { return r.ahead }

func (r *recordingTx) SearchEach(qs []*search.Query) ([]*store.Page, error) {
	return make([]*store.Page, len(qs)), nil
}

func (r *recordingTx) Put(res *store.Resource, _ []search.Entry) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.puts = append(r.puts, res)
	return nil
}

// TestRenderedInOrder: a transaction of many POSTs, made on several
// goroutines, puts every resource once, in Bundle order, as made for its
// entry, whether the store writes ahead (each put as it is made) or not
// (all made first), and through the tenant's view of the store too.
func TestRenderedInOrder(t *testing.T) {
	const n = 5*renderChunk + 3 // chunks, and a last one not full
	for _, ahead := range []bool{false, true} {
		for _, tenant := range []string{"", "clinic-a"} {
			t.Run(fmt.Sprintf("ahead=%v,tenant=%q", ahead, tenant), func(t *testing.T) {
				e := New(Config{})
				var entries []*Entry
				for i := range n {
					en, err := e.NewEntry(i, "POST", "Basic", "", map[string]any{"resourceType": "Basic",
						"code": map[string]any{"text": fmt.Sprint("n", i)}}, "")
					if err != nil {
						t.Fatal(err)
					}
					entries = append(entries, en)
				}
				rec := &recordingTx{ahead: ahead}
				var tx store.Tx = rec
				if tenant != "" {
					tx = tenantTx{Tx: rec, tenant: tenant, indexed: new(int)}
				}
				if got := store.TxWritesAhead(tx); got != ahead {
					t.Fatalf("TxWritesAhead = %v, want %v", got, ahead)
				}
				if err := e.runTransaction(tx, nil, entries, time.Now(), nil, nil); err != nil {
					t.Fatal(err)
				}
				if len(rec.puts) != n {
					t.Fatalf("%d puts, want %d", len(rec.puts), n)
				}
				for i, r := range rec.puts {
					var doc struct {
						ID   string                `json:"id"`
						Code struct{ Text string } `json:"code"`
					}
					if err := json.Unmarshal(r.Body, &doc); err != nil {
						t.Fatal(err)
					}
					if doc.Code.Text != fmt.Sprint("n", i) || r.ID != entries[i].id || doc.ID != r.ID {
						t.Errorf("put %d: %s/%s %s, want entry %d's (id %s)", i, r.Type, r.ID, r.Body, i, entries[i].id)
					}
				}
			})
		}
	}
}
