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
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestGroupMembership: a Group export's members follow R4's Group: a
// versioned reference is its Patient (it was dropped), a member whose
// period ended before the kick-off (it was exported) or starts after it
// is left out, as an inactive one is (p7 F16).
func TestGroupMembership(t *testing.T) {
	ctx := context.Background()
	a, st := newApp(t, 1<<20)
	seed(t, st, "Patient", 8, func(int) map[string]any { return map[string]any{"gender": "other"} })
	member := func(ref string, extra map[string]any) map[string]any {
		m := map[string]any{"entity": map[string]any{"reference": ref}}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	seed(t, st, "Group", 1, func(int) map[string]any {
		return map[string]any{"type": "person", "actual": true, "member": []any{
			member("Patient/patient-0000000/_history/1", nil),
			member("Patient/patient-0000001", map[string]any{"period": map[string]any{"end": "2001-01-01"}}),
			member("Patient/patient-0000002", map[string]any{"period": map[string]any{"start": "2999"}}),
			member("Patient/patient-0000003", map[string]any{"period": map[string]any{"start": "2001-01", "end": "2999-12-31T00:00:00Z"}}),
			member("Patient/patient-0000004", map[string]any{"inactive": true}),
			member("Patient/patient-0000005", map[string]any{"period": map[string]any{"end": "2001"}}),
			// Minute precision, and a fraction without zone: ended long ago.
			member("Patient/patient-0000006", map[string]any{"period": map[string]any{"end": "2001-01-01T10:00Z"}}),
			member("Patient/patient-0000007", map[string]any{"period": map[string]any{"end": "2001-01-01T10:00:00.5"}}),
		}}
	})
	sc := auditlog.NewScope("bulk-export", &auth.Principal{ClientID: "c", Scopes: auth.ParseScopes("system/*.rs")})
	j, err := a.Bulk.Export(ctx, sc, bulk.ExportParams{Level: bulk.LevelGroup, Group: "group-0000000", Prefer: "respond-async",
		Base: "https://gw", Query: url.Values{"_type": {"Patient"}}})
	if err != nil {
		t.Fatal(err)
	}
	waitJob(t, a, sc, j.ID, func(j *store.Job) bool { return j.Status == store.JobDone })
	var ids []string
	err = a.Jobs.File(ctx, auditlog.NewScope("job-download", sc.Principal), j.ID, 1, func(p []byte) error {
		for line := range strings.Lines(string(p)) {
			var r struct{ ID string }
			_ = json.Unmarshal([]byte(line), &r)
			ids = append(ids, r.ID)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"patient-0000000", "patient-0000003"}; !slices.Equal(slices.Sorted(slices.Values(ids)), want) {
		t.Errorf("Group export has the Patients %v, want %v", ids, want)
	}
}

// TestGroupExportAllTenants: an all-tenant client's Group export reads the
// Group's tenant only, as $everything reads a patient's chart in the
// Patient's tenant: another clinic's Observation about a member, and a
// member Patient of another clinic, are not the Group's data (p7 F20).
func TestGroupExportAllTenants(t *testing.T) {
	ctx := context.Background()
	a, st := newApp(t, 1<<20)
	obs := func(subject string) map[string]any {
		return map[string]any{"status": "final", "code": map[string]any{"text": "x"}, "subject": map[string]any{"reference": subject}}
	}
	err := st.Write(ctx, func(tx store.Tx) error {
		for _, r := range []struct {
			typ, id, tenant string
			doc             map[string]any
		}{
			{"Patient", "pa", "clinic-a", map[string]any{"gender": "other"}},
			{"Patient", "pb", "clinic-b", map[string]any{"gender": "other"}},
			{"Group", "g", "clinic-a", map[string]any{"type": "person", "actual": true, "member": []any{
				map[string]any{"entity": map[string]any{"reference": "Patient/pa"}},
				map[string]any{"entity": map[string]any{"reference": "Patient/pb"}}}}},
			{"Observation", "oa", "clinic-a", obs("Patient/pa")},
			{"Observation", "ob-about-pa", "clinic-b", obs("Patient/pa")},
			{"Observation", "ob", "clinic-b", obs("Patient/pb")},
		} {
			res, entries, err := store.NewVersion(r.typ, r.id, 1, r.doc, time.Now().Add(-time.Hour))
			if err != nil {
				return err
			}
			res.Tenant = r.tenant
			if err := tx.Put(res, entries); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sc := auditlog.NewScope("bulk-export", &auth.Principal{ClientID: "auditor", Tenant: search.AllTenants, Scopes: auth.ParseScopes("system/*.rs")})
	j, err := a.Bulk.Export(ctx, sc, bulk.ExportParams{Level: bulk.LevelGroup, Group: "g", Prefer: "respond-async",
		Base: "https://gw", Query: url.Values{"_type": {"Patient,Observation"}}})
	if err != nil {
		t.Fatal(err)
	}
	cur := waitJob(t, a, sc, j.ID, func(j *store.Job) bool { return j.Status == store.JobDone })
	var m bulk.Manifest
	if err := json.Unmarshal(cur.Result, &m); err != nil {
		t.Fatal(err)
	}
	var got []string
	for i := range m.Output {
		err := a.Jobs.File(ctx, auditlog.NewScope("job-download", sc.Principal), j.ID, i+1, func(p []byte) error {
			for line := range strings.Lines(string(p)) {
				var r struct{ ResourceType, ID string }
				_ = json.Unmarshal([]byte(line), &r)
				got = append(got, r.ResourceType+"/"+r.ID)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if want := []string{"Observation/oa", "Patient/pa"}; !slices.Equal(slices.Sorted(slices.Values(got)), want) {
		t.Errorf("all-tenant Group export has %v, want %v (clinic-a's only)", got, want)
	}
}

// TestExportRecordProvenances: a Patient or Group export holds the
// Provenances that target a patient's (a member's) resources, not only
// those that target the Patient: a record's Provenance targets its
// Observations when the Patient was not written again. A Group export
// subsets one that targets others' too, and its download names the
// members (p7 F18).
func TestExportRecordProvenances(t *testing.T) {
	ctx := context.Background()
	a, st := newApp(t, 1<<20)
	seed(t, st, "Patient", 2, func(int) map[string]any { return map[string]any{"gender": "other"} })
	seed(t, st, "Observation", 2, func(i int) map[string]any {
		return map[string]any{"status": "final", "code": map[string]any{"text": "x"},
			"subject": map[string]any{"reference": fmt.Sprintf("Patient/patient-%07d", i)}}
	})
	seed(t, st, "Group", 1, func(int) map[string]any {
		return map[string]any{"type": "person", "actual": true,
			"member": []any{map[string]any{"entity": map[string]any{"reference": "Patient/patient-0000000"}}}}
	})
	targets := [][]string{{"Observation/observation-0000000"}, {"Observation/observation-0000001"},
		{"Observation/observation-0000000", "Observation/observation-0000001"}, {"Group/group-0000000"}}
	seed(t, st, "Provenance", len(targets), func(i int) map[string]any {
		var ts []any
		for _, ref := range targets[i] {
			ts = append(ts, map[string]any{"reference": ref})
		}
		return map[string]any{"recorded": "2026-01-01T00:00:00Z", "agent": []any{map[string]any{"who": map[string]any{"display": "x"}}}, "target": ts}
	})
	sc := auditlog.NewScope("bulk-export", &auth.Principal{ClientID: "c", Scopes: auth.ParseScopes("system/*.rs")})
	for _, tc := range []struct {
		level    string
		want     []string // Provenance id: its targets
		patients []string
	}{
		// (provenance-0000003 targets the Group, which is about its member.)
		{bulk.LevelGroup, []string{"provenance-0000000:1", "provenance-0000002:1", "provenance-0000003:1"}, []string{"Patient/patient-0000000"}},
		{bulk.LevelPatient, []string{"provenance-0000000:1", "provenance-0000001:1", "provenance-0000002:2", "provenance-0000003:1"},
			[]string{"Patient/patient-0000000", "Patient/patient-0000001"}},
	} {
		t.Run(tc.level, func(t *testing.T) {
			j, err := a.Bulk.Export(ctx, sc, bulk.ExportParams{Level: tc.level, Group: "group-0000000", Prefer: "respond-async",
				Base: "https://gw", Query: url.Values{"_type": {"Provenance"}}})
			if err != nil {
				t.Fatal(err)
			}
			waitJob(t, a, sc, j.ID, func(j *store.Job) bool { return j.Status == store.JobDone })
			var got []string
			dl := auditlog.NewScope("job-download", sc.Principal)
			err = a.Jobs.File(ctx, dl, j.ID, 1, func(p []byte) error {
				for line := range strings.Lines(string(p)) {
					var r struct {
						ID     string
						Target []any
					}
					_ = json.Unmarshal([]byte(line), &r)
					got = append(got, fmt.Sprintf("%s:%d", r.ID, len(r.Target)))
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if slices.Sort(got); !slices.Equal(got, tc.want) {
				t.Errorf("Provenances exported %v, want %v", got, tc.want)
			}
			if named := slices.Sorted(slices.Values(dl.Patients())); !slices.Equal(named, tc.patients) {
				t.Errorf("the download names %v, want %v", named, tc.patients)
			}
		})
	}
}
