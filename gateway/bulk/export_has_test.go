package bulk_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/bulk"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestExportTypeFilterHas: a _typeFilter's _has looks only at the
// exporting tenant's resources (clinic-a's pa2 is named by an Observation
// of clinic-b and one of the default tenant, neither of which is clinic-a's
// to see), and needs the right to read or search the type it looks into,
// as a search's _has does (a Patient-only client is refused, 403).
func TestExportTypeFilterHas(t *testing.T) {
	ctx := context.Background()
	a, st := newApp(t, 1<<20)
	obs := func(patient string) map[string]any {
		return map[string]any{"status": "final", "code": map[string]any{"coding": []any{map[string]any{"system": "urn:c", "code": "c1"}}},
			"subject": map[string]any{"reference": "Patient/" + patient}}
	}
	err := st.Write(ctx, func(tx store.Tx) error {
		for _, r := range []struct {
			tenant, typ, id string
			doc             map[string]any
		}{
			{"clinic-a", "Patient", "pa1", map[string]any{"gender": "other"}},
			{"clinic-a", "Patient", "pa2", map[string]any{"gender": "other"}},
			{"clinic-a", "Observation", "oa1", obs("pa1")},
			{"clinic-b", "Observation", "ob2", obs("pa2")},
			{"", "Observation", "od2", obs("pa2")},
		} {
			v, entries, err := store.NewVersion(r.typ, r.id, 1, r.doc, time.Now().Add(-time.Hour))
			if err != nil {
				return err
			}
			v.Tenant = r.tenant
			if err := tx.Put(v, entries); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	query := map[string][]string{"_type": {"Patient"}, "_typeFilter": {"Patient?_has:Observation:subject:code=urn:c|c1"}}
	sc := auditlog.NewScope("bulk-export", &auth.Principal{ClientID: "c", Tenant: "clinic-a", Scopes: auth.ParseScopes("system/*.rs")})
	lines, _ := exported(t, a, sc, bulk.ExportParams{Level: bulk.LevelSystem, Query: query})
	var got []string
	for _, l := range lines["Patient"] {
		got = append(got, idOf(t, l))
	}
	if slices.Sort(got); !slices.Equal(got, []string{"pa1"}) {
		t.Errorf("clinic-a's export of Patient?_has:Observation:subject:code=c1 = %v, want [pa1]", got)
	}

	pat := auditlog.NewScope("bulk-export", &auth.Principal{ClientID: "p", Tenant: "clinic-a", Scopes: auth.ParseScopes("system/Patient.rs")})
	_, err = a.Bulk.Export(ctx, pat, bulk.ExportParams{Level: bulk.LevelSystem, Prefer: "respond-async", Base: "https://gw", Query: query})
	var f *auth.Failure
	if !errors.As(err, &f) || f.Status != 403 {
		t.Errorf("a Patient-only client's export with a _has on Observation = %v, want 403", err)
	}
}

// idOf is the id of an exported NDJSON line.
func idOf(t *testing.T, line string) string {
	t.Helper()
	var r struct{ ID string }
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		t.Fatal(err)
	}
	return r.ID
}
