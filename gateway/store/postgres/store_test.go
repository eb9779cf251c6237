package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

func TestBadQueries(t *testing.T) {
	s, _ := openFresh(t, Options{})
	bad := []search.Clause{
		{Param: "x", Type: search.TypeToken, Modifier: "in", Values: []search.Value{{Code: "a"}}},
		{Param: "x", Type: search.TypeString, Modifier: "text", Values: []search.Value{{Str: "a"}}},
		{Param: "x", Type: search.TypeDate, Modifier: "exact", Values: []search.Value{{}}},
		{Param: "x", Type: search.TypeToken},
		{Param: "x", Type: "composite", Values: []search.Value{{Code: "a"}}},
		{Param: "x", Type: search.TypeReference, Chain: &search.Chain{TargetType: "Patient"}},
		{Param: "x", Type: search.TypeReference, Modifier: "below", Values: []search.Value{{RefID: "a"}}},
	}
	for _, cl := range bad {
		if _, err := s.Search(context.Background(), &search.Query{Type: "Patient", Clauses: []search.Clause{cl}}); err == nil {
			t.Errorf("%+v: no error", cl)
		}
	}
	if _, err := s.Search(context.Background(), nil); err == nil {
		t.Error("nil query: no error")
	}
}

func TestWriteDefaults(t *testing.T) {
	ctx := context.Background()
	s, _ := openFresh(t, Options{})
	r := &store.Resource{Type: "Patient", ID: "a", Version: 1, Body: []byte(`{}`)}
	l := &store.Ledger{Source: "s", Kind: "k", RecordID: "r", Version: "1"}
	before := time.Now().Add(-time.Second)
	err := s.Write(ctx, func(tx store.Tx) error {
		if err := tx.Put(r, nil); err != nil {
			return err
		}
		return tx.PutLedger(l)
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.LastUpdated.Before(before) || l.Received.Before(before) {
		t.Errorf("zero times not set: %v %v", r.LastUpdated, l.Received)
	}
	got, err := s.Read(ctx, "Patient", "a")
	if err != nil || !got.LastUpdated.Equal(r.LastUpdated) {
		t.Errorf("Read: %v %v, want last updated %v", got, err, r.LastUpdated)
	}
}

// TestExactBytes: bodies come back byte for byte (BYTEA, not JSONB).
func TestExactBytes(t *testing.T) {
	ctx := context.Background()
	s, _ := openFresh(t, Options{})
	body := []byte("{\"b\":1,  \"a\":\"\\u00e9\",\"a\":2}\n")
	err := s.Write(ctx, func(tx store.Tx) error {
		if err := tx.Put(&store.Resource{Type: "Basic", ID: "a", Version: 1, Body: body}, nil); err != nil {
			return err
		}
		return tx.Put(&store.Resource{Type: "Basic", ID: "empty", Version: 1}, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Read(ctx, "Basic", "a"); err != nil || string(got.Body) != string(body) {
		t.Errorf("Read: %q %v, want %q", got.Body, err, body)
	}
	if got, err := s.Read(ctx, "Basic", "empty"); err != nil || got.Body == nil || len(got.Body) != 0 {
		t.Errorf("Read of a nil body: %v %v, want an empty, non-nil body", got, err)
	}
}

// TestUnstorableText: NUL bytes and invalid UTF-8 (which PostgreSQL text
// cannot hold) in index values, query values, keys and ledger fields are
// accepted and still match.
func TestUnstorableText(t *testing.T) {
	ctx := context.Background()
	s, _ := openFresh(t, Options{})
	odd := "a\x00b\xffc"
	err := s.Write(ctx, func(tx store.Tx) error {
		err := tx.Put(&store.Resource{Type: "Patient", ID: "a", Version: 1, Body: []byte(`{}`)}, []search.Entry{
			{Param: "identifier", Type: search.TypeToken, System: odd, Code: odd},
			{Param: "family", Type: search.TypeString, Exact: odd},
		})
		if err != nil {
			return err
		}
		if err := tx.ClaimKey("Patient|identifier="+odd, "Patient", "a"); err != nil {
			return err
		}
		return tx.PutLedger(&store.Ledger{Source: odd, Kind: "k", RecordID: odd, Version: "1", ContentHash: odd})
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range []search.Clause{
		{Param: "identifier", Type: search.TypeToken, Values: []search.Value{{System: odd, Code: odd, HasSystem: true}}},
		{Param: "family", Type: search.TypeString, Modifier: "exact", Values: []search.Value{{Str: odd}}},
	} {
		pg, err := s.Search(ctx, &search.Query{Type: "Patient", Clauses: []search.Clause{cl}})
		if err != nil || len(pg.Matches) != 1 {
			t.Errorf("%s: %v %v", cl.Param, pg, err)
		}
	}
	err = s.Write(ctx, func(tx store.Tx) error {
		if _, id, err := tx.KeyOwner("Patient|identifier=" + odd); err != nil || id != "a" {
			return fmt.Errorf("KeyOwner: %q %v", id, err)
		}
		_, err := tx.Ledger(odd, "k", odd, "1")
		return err
	})
	if err != nil {
		t.Error(err)
	}
}

// TestNormalizedOnPut: entries whose Norm/Text are only lower-cased (or
// empty, with Exact set) still match accent-insensitive searches.
func TestNormalizedOnPut(t *testing.T) {
	ctx := context.Background()
	s, _ := openFresh(t, Options{})
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

// TestSystemSearch: a query without a type searches every type.
func TestSystemSearch(t *testing.T) {
	ctx := context.Background()
	s, _ := openFresh(t, Options{})
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	err := s.Write(ctx, func(tx store.Tx) error {
		for i, typ := range []string{"Patient", "Observation", "Patient"} {
			r := &store.Resource{Type: typ, ID: fmt.Sprint("x", i), Version: 1, LastUpdated: base.Add(time.Duration(i) * time.Hour), Body: []byte(`{}`)}
			entries := []search.Entry{{Param: "_tag", Type: search.TypeToken, System: "urn:t", Code: "a"}}
			if typ == "Observation" {
				entries = append(entries, search.Entry{Param: "subject", Type: search.TypeReference, RefType: "Patient", RefID: "x0"})
			}
			if err := tx.Put(r, entries); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	q := &search.Query{Total: true, Clauses: []search.Clause{
		{Param: "_tag", Type: search.TypeToken, Values: []search.Value{{System: "urn:t", Code: "a", HasSystem: true}}},
		{Param: "_lastUpdated", Type: search.TypeDate, Values: []search.Value{{Prefix: search.PrefixGe, Low: base.Add(time.Hour)}}},
	}, Includes: []search.Include{{SourceType: "Observation", Param: "subject"}}}
	pg, err := s.Search(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range pg.Matches {
		got = append(got, r.Type+"/"+r.ID)
	}
	if strings.Join(got, ",") != "Observation/x1,Patient/x2" || pg.Total != 2 {
		t.Errorf("matches %v total %d", got, pg.Total)
	}
	if len(pg.Included) != 1 || pg.Included[0].ID != "x0" {
		t.Errorf("included %v", pg.Included)
	}
}

// TestSortIsBytewise: ids and strings order and prefix-match bytewise
// (COLLATE "C"), like SQLite, whatever the database's collation.
func TestSortIsBytewise(t *testing.T) {
	ctx := context.Background()
	s, _ := openFresh(t, Options{})
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	ids := []string{"B", "a", "_x", "Z-1", "b"}
	err := s.Write(ctx, func(tx store.Tx) error {
		for _, id := range ids {
			err := tx.Put(&store.Resource{Type: "Basic", ID: id, Version: 1, LastUpdated: base, Body: []byte(`{}`)},
				[]search.Entry{{Param: "name", Type: search.TypeString, Exact: "z" + id}})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	pg, err := s.Search(ctx, &search.Query{Type: "Basic"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range pg.Matches {
		got = append(got, r.ID)
	}
	if strings.Join(got, " ") != "B Z-1 _x a b" {
		t.Errorf("order %v, want bytewise B Z-1 _x a b", got)
	}
}

// TestConflictMapping: the SQLSTATEs that mean "retry the transaction".
func TestConflictMapping(t *testing.T) {
	ctx := context.Background()
	for code, want := range map[string]error{
		"23505": store.ErrConflict, "40001": store.ErrConflict, "40P01": store.ErrConflict,
		"08006": store.ErrUnavailable, "57P01": store.ErrUnavailable, "57P03": store.ErrUnavailable,
		"53300": store.ErrUnavailable, "57014": store.ErrUnavailable,
	} {
		if err := mapErr(ctx, pgError(code)); !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", code, err, want)
		}
	}
	if err := mapErr(ctx, pgError("42601")); errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrUnavailable) {
		t.Errorf("syntax error mapped to %v", err)
	}
}
