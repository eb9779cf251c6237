package bulk_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/bulk"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestExportFilterAsOf (p21 F2): an export writes each resource as it was
// at its transaction time, and its _typeFilter and Group compartment are
// decided on that version, not on the current one: a Patient that became
// female after the kick-off is not in a gender=female export (its male
// version was), one that was female then is; an Observation moved from a
// member to another patient after the kick-off is in the Group's export
// (as it was), one moved to the member is not.
func TestExportFilterAsOf(t *testing.T) {
	ctx := context.Background()
	a, st := newApp(t, 1<<20)
	gender := []string{"male", "female"}
	seed(t, st, "Patient", 2, func(i int) map[string]any { return map[string]any{"gender": gender[i]} })
	obs := func(patient int) map[string]any {
		return map[string]any{"status": "final", "code": map[string]any{"text": "x"},
			"subject": map[string]any{"reference": fmt.Sprintf("Patient/patient-%07d", patient)}}
	}
	seed(t, st, "Observation", 2, obs)
	seed(t, st, "Group", 1, func(int) map[string]any {
		return map[string]any{"type": "person", "actual": true,
			"member": []any{map[string]any{"entity": map[string]any{"reference": "Patient/patient-0000000"}}}}
	})
	// Versions 2, last updated after the kick-off below: each patient's
	// gender swapped, each Observation moved to the other patient.
	later := time.Now().Add(time.Hour)
	err := st.Write(ctx, func(tx store.Tx) error {
		for i := range 2 {
			for _, v := range []struct {
				typ string
				doc map[string]any
			}{{"Patient", map[string]any{"gender": gender[1-i]}}, {"Observation", obs(1 - i)}} {
				r, entries, err := store.NewVersion(v.typ, fmt.Sprintf("%s-%07d", strings.ToLower(v.typ), i), 2, v.doc, later)
				if err != nil {
					return err
				}
				if err := tx.Put(r, entries); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sc := auditlog.NewScope("bulk-export", &auth.Principal{ClientID: "c", Scopes: auth.ParseScopes("system/*.rs")})
	for _, tc := range []struct {
		name, level, types, filter string
		want                       []string // Type/id versionId
	}{
		{"typeFilter", bulk.LevelSystem, "Patient", "Patient?gender=female", []string{"Patient/patient-0000001 1"}},
		{"group compartment", bulk.LevelGroup, "Observation", "", []string{"Observation/observation-0000000 1"}},
		{"patient compartment", bulk.LevelPatient, "Observation", "Observation?subject=Patient/patient-0000000",
			[]string{"Observation/observation-0000000 1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := url.Values{"_type": {tc.types}}
			if tc.filter != "" {
				q.Set("_typeFilter", tc.filter)
			}
			lines, _ := exported(t, a, sc, bulk.ExportParams{Level: tc.level, Group: "group-0000000", Query: q})
			var got []string
			for _, line := range lines[tc.types] {
				var r struct {
					ResourceType, ID string
					Meta             struct{ VersionID string }
				}
				if err := json.Unmarshal([]byte(line), &r); err != nil {
					t.Fatal(err)
				}
				got = append(got, r.ResourceType+"/"+r.ID+" "+r.Meta.VersionID)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("exported %v, want %v", got, tc.want)
			}
		})
	}
}

// TestExportSinceNothingDeleted (p21 F3): the manifest of an export with
// _since has a deleted part, [] when nothing was deleted (docs/bulk.md;
// the Bulk Data IG lets a server omit it or send []: an empty list tells
// the client that deletions were looked for); without _since it has none.
func TestExportSinceNothingDeleted(t *testing.T) {
	ctx := context.Background()
	a, st := newApp(t, 1<<20)
	seed(t, st, "Patient", 1, func(int) map[string]any { return map[string]any{"gender": "other"} })
	sc := auditlog.NewScope("bulk-export", &auth.Principal{ClientID: "c", Scopes: auth.ParseScopes("system/*.rs")})
	for _, tc := range []struct {
		since string
		want  string // the manifest's deleted, as JSON ("" absent)
	}{
		{time.Now().Add(-2 * time.Hour).UTC().Format(time.RFC3339), "[]"},
		{"", ""},
	} {
		q := url.Values{"_type": {"Patient"}}
		if tc.since != "" {
			q.Set("_since", tc.since)
		}
		j, err := a.Bulk.Export(ctx, sc, bulk.ExportParams{Level: bulk.LevelSystem, Prefer: "respond-async", Base: "https://gw", Query: q})
		if err != nil {
			t.Fatal(err)
		}
		cur := waitJob(t, a, sc, j.ID, func(j *store.Job) bool { return j.Status == store.JobDone })
		var m map[string]json.RawMessage
		if err := json.Unmarshal(cur.Result, &m); err != nil {
			t.Fatal(err)
		}
		if got := string(m["deleted"]); got != tc.want {
			t.Errorf("_since=%q: manifest deleted = %q, want %q (%s)", tc.since, got, tc.want, cur.Result)
		}
	}
}
