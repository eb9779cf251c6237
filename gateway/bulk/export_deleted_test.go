package bulk_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/bulk"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestExportNamesIgnoredParameters: the parameters Prefer:
// handling=lenient ignores are named in the manifest's error file (an
// informational OperationOutcome), so the client can tell that they were
// not applied.
func TestExportNamesIgnoredParameters(t *testing.T) {
	ctx := context.Background()
	a, st := newApp(t, 1<<20)
	seed(t, st, "Patient", 2, func(int) map[string]any { return map[string]any{"gender": "other"} })
	sc := auditlog.NewScope("bulk-export", &auth.Principal{ClientID: "c", Scopes: auth.ParseScopes("system/*.rs")})
	j, err := a.Bulk.Export(ctx, sc, bulk.ExportParams{Level: bulk.LevelSystem, Prefer: "respond-async, handling=lenient", Base: "https://gw",
		Query: url.Values{"_type": {"Patient"}, "organizeOutputBy": {"Patient"}}})
	if err != nil {
		t.Fatal(err)
	}
	cur := waitJob(t, a, sc, j.ID, func(j *store.Job) bool { return j.Status == store.JobDone })
	var m bulk.Manifest
	if err := json.Unmarshal(cur.Result, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Output) != 1 || m.Output[0].Count != 2 || len(m.Error) != 1 || m.Error[0].Type != "OperationOutcome" {
		t.Fatalf("manifest %s, want the Patients and one error file", cur.Result)
	}
	var file strings.Builder
	if err := a.Jobs.File(ctx, auditlog.NewScope("job-download", sc.Principal), j.ID, 2, func(p []byte) error { file.Write(p); return nil }); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(file.String(), `"resourceType":"OperationOutcome"`) || !strings.Contains(file.String(), "organizeOutputBy") {
		t.Errorf("error file %q, want an OperationOutcome naming organizeOutputBy", file.String())
	}
}

// TestExportDeleted: an export with _since lists, in the manifest's
// deleted files, the resources of its types deleted after _since and up
// to its transaction time (Bulk Data IG v2: one transaction Bundle a
// line, DELETE Type/id), of the exporting tenant only, and at Patient and
// Group level only those whose last version was about a patient, a
// member; the download names the patients (p7 F1). An export without
// _since has no deleted part.
func TestExportDeleted(t *testing.T) {
	ctx := context.Background()
	a, st := newApp(t, 1<<20)
	seed(t, st, "Patient", 2, func(int) map[string]any { return map[string]any{"gender": "other"} })
	seed(t, st, "Observation", 4, func(i int) map[string]any {
		return map[string]any{"status": "final", "code": map[string]any{"text": "x"},
			"subject": map[string]any{"reference": fmt.Sprintf("Patient/patient-%07d", i%2)}}
	})
	seed(t, st, "Group", 1, func(int) map[string]any {
		return map[string]any{"type": "person", "actual": true,
			"member": []any{map[string]any{"entity": map[string]any{"reference": "Patient/patient-0000000"}}}}
	})
	// A record's Provenance, about patient 1 by its target.
	seed(t, st, "Provenance", 1, func(int) map[string]any {
		return map[string]any{"recorded": "2026-01-01T00:00:00Z", "agent": []any{map[string]any{"who": map[string]any{"display": "x"}}},
			"target": []any{map[string]any{"reference": "Observation/observation-0000003"}}}
	})
	now := time.Now()
	err := st.Write(ctx, func(tx store.Tx) error {
		r, entries, err := store.NewVersion("Observation", "obs-b", 1, map[string]any{"status": "final", "code": map[string]any{"text": "x"},
			"subject": map[string]any{"reference": "Patient/patient-0000000"}}, now.Add(-time.Hour))
		if err != nil {
			return err
		}
		r.Tenant = "clinic-b"
		return tx.Put(r, entries)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []struct {
		typ, id, tenant string
		at              time.Duration
	}{
		{"Observation", "observation-0000000", "", -time.Minute},      // patient 0, a member
		{"Observation", "observation-0000001", "", -time.Minute},      // patient 1
		{"Observation", "observation-0000002", "", -45 * time.Minute}, // before _since
		{"Patient", "patient-0000001", "", -time.Minute},
		{"Provenance", "provenance-0000000", "", -time.Minute},
		{"Observation", "obs-b", "clinic-b", -time.Minute}, // another tenant's
	} {
		err := st.Write(ctx, func(tx store.Tx) error {
			return tx.Put(&store.Resource{Type: d.typ, ID: d.id, Version: 2, Deleted: true, LastUpdated: now.Add(d.at), Tenant: d.tenant}, nil)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	since := now.Add(-30 * time.Minute).UTC().Format(time.RFC3339Nano)
	sc := auditlog.NewScope("bulk-export", &auth.Principal{ClientID: "c", Scopes: auth.ParseScopes("system/*.rs")})
	for _, tc := range []struct {
		level, since string
		want         map[string][]string // deleted type -> Type/id
		patients     []string            // named by the download of the deleted Observations
	}{
		{bulk.LevelSystem, since, map[string][]string{"Patient": {"Patient/patient-0000001"},
			"Observation": {"Observation/observation-0000000", "Observation/observation-0000001"},
			"Provenance":  {"Provenance/provenance-0000000"}},
			[]string{"Patient/patient-0000000", "Patient/patient-0000001"}},
		{bulk.LevelPatient, since, map[string][]string{"Patient": {"Patient/patient-0000001"},
			"Observation": {"Observation/observation-0000000", "Observation/observation-0000001"},
			"Provenance":  {"Provenance/provenance-0000000"}},
			[]string{"Patient/patient-0000000", "Patient/patient-0000001"}},
		{bulk.LevelGroup, since, map[string][]string{"Observation": {"Observation/observation-0000000"}},
			[]string{"Patient/patient-0000000"}},
		{bulk.LevelSystem, "", nil, nil},
	} {
		name := tc.level + " with _since"
		if tc.since == "" {
			name = tc.level + " without _since"
		}
		t.Run(name, func(t *testing.T) {
			q := url.Values{"_type": {"Patient,Observation,Provenance"}}
			if tc.since != "" {
				q.Set("_since", tc.since)
			}
			j, err := a.Bulk.Export(ctx, sc, bulk.ExportParams{Level: tc.level, Group: "group-0000000", Prefer: "respond-async", Base: "https://gw", Query: q})
			if err != nil {
				t.Fatal(err)
			}
			cur := waitJob(t, a, sc, j.ID, func(j *store.Job) bool { return j.Status == store.JobDone })
			var m struct {
				bulk.Manifest
				Deleted *[]bulk.ManifestFile `json:"deleted"`
			}
			if err := json.Unmarshal(cur.Result, &m); err != nil {
				t.Fatal(err)
			}
			if tc.since == "" {
				if m.Deleted != nil {
					t.Errorf("manifest without _since %s has a deleted part", cur.Result)
				}
				return
			}
			if m.Deleted == nil {
				t.Fatalf("manifest with _since %s has no deleted part", cur.Result)
			}
			got := map[string][]string{}
			for _, f := range *m.Deleted {
				n, err := strconv.Atoi(f.URL[strings.LastIndex(f.URL, "/")+1:])
				if err != nil || f.Type != "Bundle" {
					t.Fatalf("deleted file %+v", f)
				}
				var body strings.Builder
				dl := auditlog.NewScope("job-download", sc.Principal)
				if err := a.Jobs.File(ctx, dl, j.ID, n, func(p []byte) error { body.Write(p); return nil }); err != nil {
					t.Fatal(err)
				}
				var typ string
				lines := 0
				for line := range strings.Lines(body.String()) {
					var b struct {
						ResourceType, Type string
						Entry              []struct{ Request struct{ Method, URL string } }
					}
					if err := json.Unmarshal([]byte(line), &b); err != nil || b.ResourceType != "Bundle" || b.Type != "transaction" ||
						len(b.Entry) != 1 || b.Entry[0].Request.Method != "DELETE" {
						t.Fatalf("deleted line %q is not a transaction Bundle deleting one resource", line)
					}
					typ, _, _ = strings.Cut(b.Entry[0].Request.URL, "/")
					got[typ] = append(got[typ], b.Entry[0].Request.URL)
					lines++
				}
				if lines != f.Count {
					t.Errorf("deleted file %d: %d lines, manifest count %d", n, lines, f.Count)
				}
				if named := slices.Sorted(slices.Values(dl.Patients())); typ == "Observation" && !slices.Equal(named, tc.patients) {
					t.Errorf("the download of deleted Observations names %v, want %v", named, tc.patients)
				}
			}
			for typ := range got {
				slices.Sort(got[typ])
			}
			if !maps.EqualFunc(got, tc.want, slices.Equal) {
				t.Errorf("deleted = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestExportDownloadScopes: a file is served to a token of the job's
// client only when its scopes cover the file's type, whatever the
// kick-off's token covered: an ingest-only token gets no Patient file
// (p7 F17). The error file needs no scope.
func TestExportDownloadScopes(t *testing.T) {
	ctx := context.Background()
	a, st := newApp(t, 1<<20)
	seed(t, st, "Patient", 2, func(int) map[string]any { return map[string]any{"gender": "other"} })
	seed(t, st, "Observation", 2, func(i int) map[string]any {
		return map[string]any{"status": "final", "code": map[string]any{"text": "x"},
			"subject": map[string]any{"reference": fmt.Sprintf("Patient/patient-%07d", i)}}
	})
	sc := auditlog.NewScope("bulk-export", &auth.Principal{ClientID: "c", Scopes: auth.ParseScopes("system/*.rs")})
	j, err := a.Bulk.Export(ctx, sc, bulk.ExportParams{Level: bulk.LevelSystem, Prefer: "respond-async, handling=lenient", Base: "https://gw",
		Query: url.Values{"_type": {"Patient,Observation"}, "allowPartialManifests": {"false"}}})
	if err != nil {
		t.Fatal(err)
	}
	done := waitJob(t, a, sc, j.ID, func(j *store.Job) bool { return j.Status == store.JobDone })
	// Files: 1 Patient, 2 Observation, 3 the error file.
	for _, tc := range []struct {
		scopes string
		file   int
		need   string // "" allowed
	}{
		{"system/*.rs", 1, ""},
		{auth.ScopeIngest, 1, "system/Patient.rs"},
		{auth.ScopeIngest, 2, "system/Observation.rs"},
		{"system/Observation.rs", 1, "system/Patient.rs"},
		{"system/Observation.rs", 2, ""},
		{"system/Patient.s", 1, ""},
		{auth.ScopeIngest, 3, ""},
	} {
		dl := auditlog.NewScope("job-download", &auth.Principal{ClientID: "c", Scopes: auth.ParseScopes(tc.scopes)})
		err := a.Bulk.CheckDownload(dl, done, tc.file)
		var f *auth.Failure
		switch {
		case tc.need == "" && err != nil:
			t.Errorf("CheckDownload(%s, file %d) = %v, want allowed", tc.scopes, tc.file, err)
		case tc.need != "" && (!errors.As(err, &f) || f.Status != 403 || f.Scope != tc.need):
			t.Errorf("CheckDownload(%s, file %d) = %v, want 403 naming %s", tc.scopes, tc.file, err, tc.need)
		}
	}
}
