package engine

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// failingLookups is a store.Tx whose SearchEach answers the first query
// and fails the rest, as a batch that broke after its first statement;
// nothing else of it may be called.
type failingLookups struct {
	store.Tx
	err error
}

func (f failingLookups) SearchEach(qs []*search.Query) ([]*store.Page, error) {
	pages := make([]*store.Page, len(qs))
	pages[0] = &store.Page{Total: -1}
	return pages, f.err
}

// TestLookupFailureNamesItsEntry: when the store answers some conditional
// lookups and then fails, the transaction fails with the store's error at
// the first entry left unanswered, after deciding the ones before it.
func TestLookupFailureNamesItsEntry(t *testing.T) {
	e := New(Config{})
	gone := errors.New("the database went away")
	var entries []*Entry
	for i := range 3 {
		en, err := e.NewEntry(i, "POST", "Patient", "", map[string]any{"resourceType": "Patient"},
			fmt.Sprintf("identifier=urn:x|%d", i))
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, en)
	}
	err := e.runTransaction(failingLookups{err: gone}, nil, entries, time.Now(), nil, nil)
	var ee *outcome.EntryError
	if !errors.As(err, &ee) || ee.Index != 1 || !errors.Is(err, gone) {
		t.Fatalf("runTransaction = %v; want the store's error at entry 1", err)
	}
	if entries[0].id == "" || entries[0].key == "" {
		t.Errorf("entry 0, answered before the failure, was not decided: id %q, key %q", entries[0].id, entries[0].key)
	}
}
