package sqlite

import (
	"context"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestNormalizedOnPut: entries whose Norm/Text are only lower-cased (or
// empty, with Exact set) still match accent-insensitive searches.
func TestNormalizedOnPut(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t, Options{})
	defer s.Close()
	err := s.Write(ctx, func(tx store.Tx) error {
		return tx.Put(&store.Resource{Type: "Patient", ID: "a", Version: 1, Body: []byte(`{}`)}, []search.Entry{
			{Param: "family", Type: search.TypeString, Exact: "Ñandú-Pérez"},
			{Param: "given", Type: search.TypeString, Exact: "Zoë", Norm: "zoë"},
			{Param: "code", Type: search.TypeToken, Code: "x", Text: "crème brûlée"},
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range []search.Clause{
		{Param: "family", Type: search.TypeString, Values: []search.Value{{Str: "nandupe"}}},
		{Param: "family", Type: search.TypeString, Modifier: "contains", Values: []search.Value{{Str: "PÉREZ"}}},
		{Param: "given", Type: search.TypeString, Values: []search.Value{{Str: "ZOE"}}},
		{Param: "code", Type: search.TypeToken, Modifier: "text", Values: []search.Value{{Str: "Brulee"}}},
	} {
		pg, err := s.Search(ctx, &search.Query{Type: "Patient", Clauses: []search.Clause{cl}})
		if err != nil || len(pg.Matches) != 1 {
			t.Errorf("%s:%s=%q: %v %v", cl.Param, cl.Modifier, cl.Values[0].Str, pg, err)
		}
	}
}
