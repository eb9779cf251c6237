package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// TestSpeculationFitsOrNot: new resources rendered ahead of their write
// transaction (Engine.Speculate) are put only where the transaction
// decides what the speculation guessed; where a Patient the speculation
// did not find is stored before the transaction runs, the transaction
// references the stored Patient, puts no guess, and creates no second
// Patient.
func TestSpeculationFitsOrNot(t *testing.T) {
	t.Cleanup(engine.CheckGuesses(true)) // every record speculates; every guess put is checked
	c := newChartConfig(t, app.Config{})
	ctx := context.Background()
	e := c.a.Engine
	const pu = "urn:uuid:7a1c0de0-0000-4000-8000-000000000001"
	// entries: a conditional create of the Patient person, two
	// Observations referencing it (one a conditional create too).
	entries := func(person, obs string) []*engine.Entry {
		patient := map[string]any{"resourceType": "Patient",
			"identifier": []any{map[string]any{"system": "urn:test:person", "value": person}}}
		var out []*engine.Entry
		en, err := e.NewEntry(0, "POST", "Patient", pu, patient, "identifier=urn:test:person|"+person)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, en)
		for i, crit := range []string{"identifier=urn:test:obs|" + obs, ""} {
			o := observation("vital-signs", "85354-9", pu)
			o["identifier"] = []any{map[string]any{"system": "urn:test:obs", "value": fmt.Sprint(obs, "-", i)}}
			if crit != "" {
				o["identifier"] = []any{map[string]any{"system": "urn:test:obs", "value": obs}}
			}
			en, err := e.NewEntry(i+1, "POST", "Observation", fmt.Sprintf("urn:uuid:7a1c0de0-0000-4000-8000-00000000010%d", i), o, crit)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, en)
		}
		return out
	}
	write := func(ens []*engine.Entry, sp *engine.Speculation) {
		t.Helper()
		err := e.Write(ctx, clinic("transaction"), func(tx *engine.Tx) (int, error) {
			sp.Apply(ens)
			return 200, tx.Run(ens)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	persons := func(person string) []string {
		t.Helper()
		q, err := search.Limits{}.ParseConditional("Patient", "identifier=urn:test:person|"+person)
		if err != nil {
			t.Fatal(err)
		}
		q.Tenant = "clinic-a"
		page, err := c.a.Store.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		return ids(page.Matches)
	}
	subjects := func(ens []*engine.Entry) (out []string) {
		t.Helper()
		for _, en := range ens[1:] {
			var o struct{ Subject struct{ Reference string } }
			if err := json.Unmarshal(en.Result().Resource.Body, &o); err != nil {
				t.Fatal(err)
			}
			out = append(out, o.Subject.Reference)
		}
		return out
	}
	steps := []struct {
		name, person, obs string
		between           bool // the Patient is stored after the speculation, before the transaction
		used              int
	}{
		{"a new Patient", "A", "o1", false, 3},
		{"a stored Patient", "A", "o2", false, 2},
		{"a Patient stored in between", "B", "o3", true, 0},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			ens := entries(s.person, s.obs)
			sp := e.Speculate(ctx, clinic("transaction"), ens, []int{0})
			if s.between {
				write(entries(s.person, s.obs+"-first")[:1], nil)
			}
			write(ens, sp)
			if got := sp.Used(); got != s.used {
				t.Errorf("%d guesses put, want %d", got, s.used)
			}
			stored := persons(s.person)
			if len(stored) != 1 {
				t.Fatalf("Patients of person %s: %v, want one", s.person, stored)
			}
			for i, ref := range subjects(ens) {
				if ref != stored[0] {
					t.Errorf("Observation %d: subject %s, want %s", i, ref, stored[0])
				}
			}
		})
	}
}
