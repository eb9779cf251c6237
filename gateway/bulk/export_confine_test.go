package bulk_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/bulk"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// twoPatients posts one transaction with two patients' data (a Patient
// and an Observation each), so that the gateway's Provenance targets both
// and the transaction's AuditEvent names both; it returns the ids of the
// Patients and Observations, A's first.
func twoPatients(t *testing.T, a *app.App, sc *auditlog.Scope) (patA, patB, obsA, obsB string) {
	t.Helper()
	obs := func(patient string) map[string]any {
		return map[string]any{"resourceType": "Observation", "status": "final",
			"code":    map[string]any{"text": "a psychiatric assessment"},
			"subject": map[string]any{"reference": patient, "display": "the patient"}}
	}
	entry := func(fullURL string, r map[string]any) map[string]any {
		return map[string]any{"fullUrl": fullURL, "resource": r,
			"request": map[string]any{"method": "POST", "url": r["resourceType"]}}
	}
	const ua, ub = "urn:uuid:0b7e6c1e-1111-4b6e-9c1a-000000000001", "urn:uuid:0b7e6c1e-2222-4b6e-9c1a-000000000002"
	body, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": []any{
		entry(ua, map[string]any{"resourceType": "Patient", "gender": "female"}),
		entry(ub, map[string]any{"resourceType": "Patient", "gender": "male"}),
		entry("urn:uuid:0b7e6c1e-3333-4b6e-9c1a-000000000003", obs(ua)),
		entry("urn:uuid:0b7e6c1e-4444-4b6e-9c1a-000000000004", obs(ub)),
	}})
	res, err := a.Engine.Bundle(context.Background(), sc, body, engine.Answer{Base: "https://gw/fhir"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range res.Entry {
		parts := strings.Split(e.Response.Location, "/")
		if len(parts) < 2 {
			t.Fatalf("transaction entry location %q", e.Response.Location)
		}
		ids = append(ids, parts[1])
	}
	if len(ids) != 4 {
		t.Fatalf("transaction answered %d entries, want 4", len(ids))
	}
	return ids[0], ids[1], ids[2], ids[3]
}

// exported runs an export to its end and returns each file's lines by
// type, and the patients each file's download names.
func exported(t *testing.T, a *app.App, sc *auditlog.Scope, p bulk.ExportParams) (lines map[string][]string, named map[string][]string) {
	t.Helper()
	ctx := context.Background()
	p.Prefer, p.Base = "respond-async", "https://gw"
	j, err := a.Bulk.Export(ctx, sc, p)
	if err != nil {
		t.Fatal(err)
	}
	cur := waitJob(t, a, sc, j.ID, func(j *store.Job) bool { return j.Status == store.JobDone })
	var m bulk.Manifest
	if err := json.Unmarshal(cur.Result, &m); err != nil {
		t.Fatal(err)
	}
	lines, named = map[string][]string{}, map[string][]string{}
	for i, f := range m.Output {
		var buf bytes.Buffer
		dl := auditlog.NewScope("job-download", sc.Principal)
		if err := a.Jobs.File(ctx, dl, j.ID, i+1, func(p []byte) error { buf.Write(p); return nil }); err != nil {
			t.Fatal(err)
		}
		s := bufio.NewScanner(&buf)
		s.Buffer(nil, 1<<20)
		for s.Scan() {
			lines[f.Type] = append(lines[f.Type], s.Text())
		}
		named[f.Type] = append(named[f.Type], dl.Patients()...)
	}
	return lines, named
}

// TestGroupExportNamesOnlyItsPatients: a Group export of patient A holds
// nothing that names patient B, whose data was written in the same
// transaction as A's: the transaction's Provenance is exported as a copy
// that targets A's resources only, tagged SUBSETTED; the transaction's
// AuditEvent, which names both patients, is left out; each download's
// AuditEvent names A only. A Patient export (every patient) and a system
// export still hold the Provenance whole.
func TestGroupExportNamesOnlyItsPatients(t *testing.T) {
	ctx := context.Background()
	a, _ := newApp(t, 1<<20)
	sc := auditlog.NewScope("transaction", &auth.Principal{ClientID: "c", Scopes: auth.ParseScopes("system/*.cruds")})
	patA, patB, obsA, obsB := twoPatients(t, a, sc)
	g, _ := json.Marshal(map[string]any{"resourceType": "Group", "type": "person", "actual": true,
		"member": []any{map[string]any{"entity": map[string]any{"reference": "Patient/" + patA}}}})
	gsc := auditlog.NewScope("create", sc.Principal)
	res, err := a.Engine.Create(ctx, gsc, "Group", func() ([]byte, error) { return g, nil }, engine.Preconditions{})
	if err != nil {
		t.Fatal(err)
	}
	// The export's own patients: what a download may name.
	onlyA := []string{"Patient/" + patA}

	xsc := auditlog.NewScope("bulk-export", sc.Principal)
	lines, named := exported(t, a, xsc, bulk.ExportParams{Level: bulk.LevelGroup, Group: res.Resource.ID,
		Query: map[string][]string{"_type": {"Patient,Observation,Provenance,AuditEvent"}}})
	if got := xsc.Patients(); !slices.Equal(got, onlyA) {
		t.Errorf("Group export of A: the kick-off names %v, want %v", got, onlyA)
	}
	for typ, ls := range lines {
		for _, l := range ls {
			if strings.Contains(l, patB) || strings.Contains(l, obsB) {
				t.Errorf("Group export of A: a %s names patient B or B's Observation: %s", typ, l)
			}
		}
	}
	for typ, n := range named {
		if got := slices.Compact(slices.Sorted(slices.Values(n))); !slices.Equal(got, onlyA) {
			t.Errorf("Group export of A: the download of the %s file names %v, want %v", typ, got, onlyA)
		}
	}
	if len(lines["Patient"]) != 1 || len(lines["Observation"]) != 1 {
		t.Errorf("Group export of A: %d Patients and %d Observations, want A's one each", len(lines["Patient"]), len(lines["Observation"]))
	}
	if len(lines["Provenance"]) != 1 {
		t.Fatalf("Group export of A: %d Provenances, want the transaction's, subsetted", len(lines["Provenance"]))
	}
	var prov struct {
		Meta struct {
			Tag []struct{ System, Code string }
		}
		Target []struct{ Reference string }
	}
	if err := json.Unmarshal([]byte(lines["Provenance"][0]), &prov); err != nil {
		t.Fatal(err)
	}
	var targets []string
	for _, tg := range prov.Target {
		targets = append(targets, strings.Join(strings.Split(tg.Reference, "/")[:2], "/"))
	}
	slices.Sort(targets)
	want := []string{"Observation/" + obsA, "Patient/" + patA}
	if !slices.Equal(targets, want) {
		t.Errorf("Group export of A: the Provenance targets %v, want %v", targets, want)
	}
	subsetted := slices.ContainsFunc(prov.Meta.Tag, func(tg struct{ System, Code string }) bool {
		return tg.System == "http://terminology.hl7.org/CodeSystem/v3-ObservationValue" && tg.Code == "SUBSETTED"
	})
	if !subsetted {
		t.Errorf("Group export of A: the Provenance copy is not tagged SUBSETTED: %s", lines["Provenance"][0])
	}
	vsc := auditlog.NewScope("validate", sc.Principal)
	valid, issues, err := a.Engine.Validate(ctx, vsc, engine.ValidateRequest{Type: "Provenance", Body: func() ([]byte, error) { return []byte(lines["Provenance"][0]), nil }})
	if err != nil || !valid {
		t.Errorf("Group export of A: the Provenance copy is not a valid Provenance: %v %v", issues, err)
	}
	// The AuditEvents of A's compartment: the transaction's names B too
	// and is left out; the Group's create names A alone and is exported
	// (committed just before the export, its search index rows may not
	// be written yet: the export waits for them as a search does).
	if len(lines["AuditEvent"]) != 1 || !strings.Contains(lines["AuditEvent"][0], `"code":"create"`) {
		t.Errorf("Group export of A: AuditEvents %v, want the Group's create alone", lines["AuditEvent"])
	}

	// Every patient is a Patient export's: the Provenance stays whole.
	for _, level := range []string{bulk.LevelPatient, bulk.LevelSystem} {
		lines, _ := exported(t, a, xsc, bulk.ExportParams{Level: level, Query: map[string][]string{"_type": {"Provenance"}}})
		if len(lines["Provenance"]) != 1 || !strings.Contains(lines["Provenance"][0], obsB) ||
			strings.Contains(lines["Provenance"][0], "SUBSETTED") {
			t.Errorf("%s export: Provenances %v, want the transaction's whole", level, lines["Provenance"])
		}
	}
}

// TestGroupExportConfines: what a Group export of patient A holds of the
// resources in A's compartment that name more than A. Each case is a
// resource a client writes; the export holds it whole, a SUBSETTED copy
// with the targets named, or nothing.
func TestGroupExportConfines(t *testing.T) {
	ctx := context.Background()
	a, _ := newApp(t, 1<<20)
	sc := auditlog.NewScope("transaction", &auth.Principal{ClientID: "c", Scopes: auth.ParseScopes("system/*.cruds")})
	patA, patB, obsA, obsB := twoPatients(t, a, sc)
	// write creates a resource (or updates the one created under key) and
	// returns its id and version.
	ids := map[string]string{}
	write := func(typ, key string, doc map[string]any) (string, string) {
		t.Helper()
		doc["resourceType"] = typ
		wsc := auditlog.NewScope("update", sc.Principal)
		var res *engine.Result
		var err error
		if id, ok := ids[key]; ok {
			doc["id"] = id
			body, _ := json.Marshal(doc)
			res, err = a.Engine.Update(ctx, wsc, typ, id, func() ([]byte, error) { return body, nil }, engine.Preconditions{})
		} else {
			body, _ := json.Marshal(doc)
			res, err = a.Engine.Create(ctx, wsc, typ, func() ([]byte, error) { return body, nil }, engine.Preconditions{})
		}
		if err != nil {
			t.Fatalf("%s %s: %v", typ, key, err)
		}
		ids[key] = res.Resource.ID
		return res.Resource.ID, strconv.FormatInt(res.Resource.Version, 10)
	}
	ref := func(s string) map[string]any { return map[string]any{"reference": s} }
	obs := func(patient string) map[string]any {
		return map[string]any{"status": "final", "code": map[string]any{"text": "x"}, "subject": ref("Patient/" + patient)}
	}
	// An Observation first A's, then (corrected) B's.
	moved, v1 := write("Observation", "moved", obs(patA))
	write("Observation", "moved", obs(patB))
	prov := func(agent map[string]any, targets ...string) map[string]any {
		var ts []any
		for _, s := range targets {
			ts = append(ts, ref(s))
		}
		return map[string]any{"recorded": "2026-01-01T00:00:00Z", "target": ts,
			"text":  map[string]any{"status": "generated", "div": `<div xmlns="http://www.w3.org/1999/xhtml">the transaction of A and B</div>`},
			"agent": []any{map[string]any{"who": agent}}}
	}
	clinic := map[string]any{"display": "a clinic"}
	cases := []struct {
		typ, id string
		doc     map[string]any
		want    []string // the targets of the exported copy (nil: left out; whole: all)
		whole   bool
	}{
		{"Provenance", "only-a", prov(clinic, "Patient/"+patA, "Observation/"+obsA), nil, true},
		{"Provenance", "b-observation", prov(clinic, "Patient/"+patA, "Observation/"+obsA+"/_history/1", "Observation/"+obsB),
			[]string{"Patient/" + patA, "Observation/" + obsA + "/_history/1"}, false},
		// The version named decides: v1 was A's, the current one is B's.
		{"Provenance", "version-a", prov(clinic, "Patient/"+patA, "Observation/"+moved+"/_history/"+v1), nil, true},
		{"Provenance", "current-b", prov(clinic, "Patient/"+patA, "Observation/"+moved), []string{"Patient/" + patA}, false},
		// Nothing says whose an absolute or missing target is.
		{"Provenance", "unknown", prov(clinic, "Patient/"+patA, "https://other.example/fhir/Observation/1", "Observation/absent"),
			[]string{"Patient/" + patA}, false},
		{"Provenance", "by-identifier", func() map[string]any {
			p := prov(clinic, "Patient/"+patA)
			p["target"] = append(p["target"].([]any), map[string]any{"identifier": map[string]any{"system": "urn:x", "value": "b"}})
			return p
		}(), []string{"Patient/" + patA}, false},
		{"Provenance", "agent-b", prov(ref("Patient/"+patB), "Patient/"+patA), nil, false},
		{"Provenance", "entity-b", func() map[string]any {
			p := prov(clinic, "Patient/"+patA)
			p["entity"] = []any{map[string]any{"role": "source", "what": ref("Observation/" + obsB)}}
			return p
		}(), nil, false},
		{"Group", "a-and-b", map[string]any{"type": "person", "actual": true,
			"member": []any{map[string]any{"entity": ref("Patient/" + patA)}, map[string]any{"entity": ref("Patient/" + patB)}}}, nil, false},
		{"Group", "a-only", map[string]any{"type": "person", "actual": true,
			"member": []any{map[string]any{"entity": ref("Patient/" + patA)}}}, nil, true},
		{"Communication", "a-to-b", map[string]any{"status": "completed", "subject": ref("Patient/" + patA),
			"recipient": []any{ref("Patient/" + patB)}}, nil, false},
		{"Communication", "a-by-mrn", map[string]any{"status": "completed", "subject": ref("Patient/" + patA),
			"recipient": []any{map[string]any{"type": "Patient", "identifier": map[string]any{"system": "urn:mrn", "value": "1"}}}}, nil, false},
		{"Communication", "a-to-a", map[string]any{"status": "completed", "subject": ref("Patient/" + patA),
			"recipient": []any{ref("Patient/" + patA)}}, nil, true},
	}
	for _, c := range cases {
		write(c.typ, c.id, c.doc)
	}
	lines, named := exported(t, a, auditlog.NewScope("bulk-export", sc.Principal), bulk.ExportParams{Level: bulk.LevelGroup, Group: ids["a-only"],
		Query: map[string][]string{"_type": {"Provenance,Group,Communication"}}})
	got := map[string]map[string]any{}
	for _, ls := range lines {
		for _, l := range ls {
			var doc map[string]any
			if err := json.Unmarshal([]byte(l), &doc); err != nil {
				t.Fatal(err)
			}
			got[doc["resourceType"].(string)+"/"+doc["id"].(string)] = doc
		}
	}
	for _, c := range cases {
		t.Run(c.typ+"/"+c.id, func(t *testing.T) {
			doc, ok := got[c.typ+"/"+ids[c.id]]
			switch {
			case !c.whole && c.want == nil:
				if ok {
					t.Errorf("exported %v, want it left out", doc)
				}
				return
			case !ok:
				t.Fatalf("left out, want it exported")
			}
			meta, _ := doc["meta"].(map[string]any)
			tags, _ := json.Marshal(meta["tag"])
			if subsetted := strings.Contains(string(tags), "SUBSETTED"); subsetted == c.whole {
				t.Errorf("tags %s, want SUBSETTED %v", tags, !c.whole)
			}
			if c.whole {
				return
			}
			var targets []string
			for _, tg := range doc["target"].([]any) {
				r, _ := tg.(map[string]any)["reference"].(string)
				targets = append(targets, r)
			}
			if !slices.Equal(targets, c.want) {
				t.Errorf("targets %v, want %v", targets, c.want)
			}
			if doc["text"] != nil {
				t.Errorf("the copy keeps the narrative of the whole: %v", doc["text"])
			}
		})
	}
	for typ, n := range named {
		if got := slices.Compact(slices.Sorted(slices.Values(n))); !slices.Equal(got, []string{"Patient/" + patA}) {
			t.Errorf("the download of the %s file names %v, want A alone", typ, got)
		}
	}
}
