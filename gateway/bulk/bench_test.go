package bulk_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/bulk"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/jobs"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// benchResources is the size of the export benchmark's database.
const benchResources = 100_000

var (
	benchOnce sync.Once
	benchDB   string
)

// benchStore opens the export benchmark's database, seeded once per
// process with benchResources Observations of about 700 bytes.
func benchStore(b *testing.B) store.Store {
	b.Helper()
	ctx := context.Background()
	benchOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kg-bulk-bench")
		if err != nil {
			b.Fatal(err)
		}
		benchDB = filepath.Join(dir, "export.db")
		st, err := sqlite.Open(ctx, benchDB, sqlite.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		seed(b, st, "Observation", benchResources, func(i int) map[string]any {
			var doc map[string]any
			_ = json.Unmarshal(fmt.Appendf(nil, `{"resourceType":"Observation","status":"final",
				"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],
				"code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}],"text":"Heart rate"},
				"subject":{"reference":"Patient/p%d"},"effectiveDateTime":"2026-01-%02dT10:00:00Z",
				"identifier":[{"system":"https://bench.example/obs","value":"o%d"}],
				"valueQuantity":{"value":%d,"unit":"beats/minute","system":"http://unitsofmeasure.org","code":"/min"},
				"note":[{"text":"a benchmark resource with a line of text so that it has a realistic size of some seven hundred bytes"}]}`,
				i%1000, i%28+1, i, 50+i%70), &doc)
			return doc
		})
	})
	st, err := sqlite.Open(ctx, benchDB, sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return st
}

// BenchmarkExport measures a system export of benchResources
// Observations from SQLite (the job handler end to end: store pages, the
// authorisation of each resource, NDJSON in 1 MiB parts saved with the
// checkpoint), interleaved with its baseline: reading the same pages from
// the store and nothing else. Each iteration runs both once.
//
//	go test -run '^$' -bench Export -benchtime 3x -count 3 ./gateway/bulk
func BenchmarkExport(b *testing.B) {
	st := benchStore(b)
	ctx := context.Background()
	a, err := app.New(app.Config{Store: st, BacklogEvery: -1, Jobs: jobs.Config{Poll: 5 * time.Millisecond}})
	if err != nil {
		b.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	sc := auditlog.NewScope("bulk-export", &auth.Principal{ClientID: "bench", Scopes: auth.ParseScopes("system/*.rs")})
	var exportTime, readTime time.Duration
	for b.Loop() {
		t0 := time.Now()
		n := 0
		after := ""
		for {
			page, err := st.Export(ctx, store.ExportQuery{Type: "Observation", After: after, Limit: 1000})
			if err != nil {
				b.Fatal(err)
			}
			n += len(page)
			if len(page) < 1000 {
				break
			}
			after = page[len(page)-1].ID
		}
		readTime += time.Since(t0)
		if n != benchResources {
			b.Fatalf("read %d resources", n)
		}

		t0 = time.Now()
		j, err := a.Bulk.Export(ctx, sc, bulk.ExportParams{Level: bulk.LevelSystem, Prefer: "respond-async",
			Query: map[string][]string{"_type": {"Observation"}}})
		if err != nil {
			b.Fatal(err)
		}
		if cur := waitJob(b, a, sc, j.ID, func(j *store.Job) bool { return j.Status == store.JobDone }); cur.Done != benchResources {
			b.Fatalf("exported %d resources", cur.Done)
		}
		exportTime += time.Since(t0)
		if err := a.Jobs.Cancel(ctx, sc, j.ID); err != nil { // its files go
			b.Fatal(err)
		}
	}
	n := float64(b.N * benchResources)
	b.ReportMetric(n/exportTime.Seconds(), "export-res/s")
	b.ReportMetric(n/readTime.Seconds(), "read-res/s")
	b.ReportMetric(exportTime.Seconds()/readTime.Seconds(), "export/read")
}

// BenchmarkExportDownload measures the download of an export file as the
// edge serves it (its patients named, the AuditEvents committed, the
// parts streamed), against its baseline: the same parts streamed after an
// AuditEvent that names nobody. Two exports: benchResources Observations
// of 1,000 patients, and 100,000 Patients (one file each; 100 AuditEvents
// for the second).
//
//	go test -run '^$' -bench ExportDownload -benchtime 5x -count 3 ./gateway/bulk
func BenchmarkExportDownload(b *testing.B) {
	ctx := context.Background()
	for _, typ := range []string{"Observation", "Patient"} {
		b.Run(typ, func(b *testing.B) {
			st := benchStore(b)
			if typ == "Patient" {
				var err error
				if st, err = sqlite.Open(ctx, filepath.Join(b.TempDir(), "patients.db"), sqlite.Options{}); err != nil {
					b.Fatal(err)
				}
				defer st.Close()
				seed(b, st, "Patient", benchResources, func(i int) map[string]any {
					return map[string]any{"gender": "other", "birthDate": fmt.Sprintf("19%02d-01-01", i%100)}
				})
			}
			a, err := app.New(app.Config{Store: st, BacklogEvery: -1, Jobs: jobs.Config{Poll: 5 * time.Millisecond}})
			if err != nil {
				b.Fatal(err)
			}
			if err := a.Start(ctx); err != nil {
				b.Fatal(err)
			}
			defer a.Close()
			p := &auth.Principal{ClientID: "bench", Scopes: auth.ParseScopes("system/*.rs")}
			sc := auditlog.NewScope("bulk-export", p)
			j, err := a.Bulk.Export(ctx, sc, bulk.ExportParams{Level: bulk.LevelSystem, Prefer: "respond-async",
				Query: map[string][]string{"_type": {typ}}})
			if err != nil {
				b.Fatal(err)
			}
			waitJob(b, a, sc, j.ID, func(j *store.Job) bool { return j.Status == store.JobDone })
			defer a.Jobs.Cancel(ctx, sc, j.ID)
			discard := func([]byte) error { return nil }
			var named, plain time.Duration
			patients := 0
			for b.Loop() {
				t0 := time.Now()
				dl := auditlog.NewScope("job-download", p)
				if err := a.Jobs.File(ctx, dl, j.ID, 1, func(part []byte) error {
					if !dl.Committed() {
						if err := a.Audit.Append(dl, 200); err != nil {
							return err
						}
						dl.MarkCommitted()
					}
					return nil
				}); err != nil {
					b.Fatal(err)
				}
				named += time.Since(t0)
				patients = len(dl.Patients())

				t0 = time.Now()
				if err := a.Audit.Append(auditlog.NewScope("job-download", p), 200); err != nil {
					b.Fatal(err)
				}
				if err := st.JobFile(ctx, j.ID, 1, discard); err != nil {
					b.Fatal(err)
				}
				plain += time.Since(t0)
			}
			b.ReportMetric(float64(patients), "patients")
			b.ReportMetric(named.Seconds()*1000/float64(b.N), "ms/download")
			b.ReportMetric(plain.Seconds()*1000/float64(b.N), "ms/unnamed")
		})
	}
}
