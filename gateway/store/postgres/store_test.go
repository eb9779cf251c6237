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
