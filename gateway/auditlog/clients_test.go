package auditlog

import (
	"context"
	"encoding/json"
	"net/url"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/postgres"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/postgres/pgtest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// clientEvent is what TestRecordClients reads of a client-registration
// AuditEvent.
type clientEvent struct {
	Action, Client, Desc, Site, Who string
}

// TestRecordClients: gateways on one database audit every change of the
// registered clients once, at start: the first start every client as
// added; a restart with A removed, B given a scope and C added exactly
// three AuditEvents (D, U, C), found by AuditEvent?type=110137, on a
// chain that verifies; a restart with nothing changed none; two gateways
// starting at once each change once.
func TestRecordClients(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			var dsn string
			if backend == "postgres" {
				dsn, _ = pgtest.Schema(t, "kgc", "the registered clients' audit")
			} else {
				dsn = filepath.Join(t.TempDir(), "gw.db")
			}
			open := func() store.Store {
				var st store.Store
				var err error
				if backend == "postgres" {
					st, err = postgres.Open(ctx, dsn, postgres.Options{})
				} else {
					st, err = sqlite.Open(ctx, dsn, sqlite.Options{})
				}
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { st.Close() })
				return st
			}
			var mu sync.Mutex
			now := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
			clock := func() time.Time {
				mu.Lock()
				defer mu.Unlock()
				now = now.Add(time.Millisecond)
				return now
			}
			gateway := func(st store.Store, name string) *Log {
				return New(st, Config{Observer: name, Now: clock})
			}
			client := func(id, tenant string, scopes []string, keys ...string) auth.Registration {
				r := auth.Registration{ID: id, Tenant: tenant, Scopes: scopes, KeyThumbprints: map[string]string{}}
				for _, k := range keys {
					kid, tp, _ := strings.Cut(k, "=")
					r.KeyIDs = append(r.KeyIDs, kid)
					r.KeyThumbprints[kid] = tp
				}
				return r
			}
			st := open()
			seen := 0
			events := func(t *testing.T) []clientEvent {
				t.Helper()
				q, err := search.Parse("AuditEvent", url.Values{"type": {"http://dicom.nema.org/resources/ontology/DCM|110137"},
					"_sort": {"_lastUpdated"}, "_count": {"100"}}, false)
				if err != nil {
					t.Fatal(err)
				}
				q.Tenant = search.AllTenants
				page, err := st.Search(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				var out []clientEvent
				for _, m := range page.Matches[seen:] {
					var ev struct {
						Action, OutcomeDesc string
						Agent               []struct{ Who struct{ Display string } }
						Entity              []struct {
							What struct {
								Identifier struct{ System, Value string }
							}
						}
						Source struct{ Site string }
					}
					if err := json.Unmarshal(m.Body, &ev); err != nil {
						t.Fatal(err)
					}
					if len(ev.Entity) != 1 || ev.Entity[0].What.Identifier.System != audit.SystemClient || len(ev.Agent) != 2 {
						t.Fatalf("AuditEvent %s names %+v, agents %+v; want the client by identifier, two agents", m.ID, ev.Entity, ev.Agent)
					}
					out = append(out, clientEvent{ev.Action, ev.Entity[0].What.Identifier.Value, ev.OutcomeDesc, ev.Source.Site, ev.Agent[0].Who.Display})
				}
				seen = len(page.Matches)
				// One start's AuditEvents share their instant: by client.
				slices.SortFunc(out, func(x, y clientEvent) int { return strings.Compare(x.Client, y.Client) })
				return out
			}
			record := func(t *testing.T, l *Log, want ClientChanges, clients ...auth.Registration) {
				t.Helper()
				got, err := l.RecordClients(ctx, clients)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("RecordClients = %+v, want %+v", got, want)
				}
			}
			a := client("a", "clinic-a", []string{"system/Patient.rs"}, "ka=tp-a")
			b := client("b", "clinic-b", []string{"system/Observation.rs"}, "kb=tp-b", "kb2=tp-b2")
			c := client("c", "", []string{"system/*.rs"}, "kc=tp-c")

			t.Run("first start records every client as added", func(t *testing.T) {
				record(t, gateway(st, "gw-1"), ClientChanges{Added: []string{"a", "b"}}, b, a)
				want := []clientEvent{
					{"C", "a", `registered client added: tenant "clinic-a"; scopes system/Patient.rs; keys ka`, "*", "gw-1"},
					{"C", "b", `registered client added: tenant "clinic-b"; scopes system/Observation.rs; keys kb kb2`, "*", "gw-1"},
				}
				if got := events(t); !reflect.DeepEqual(got, want) {
					t.Errorf("AuditEvents\n got %+v\nwant %+v", got, want)
				}
			})
			t.Run("restart: A removed, B given a scope and a key replaced, C added", func(t *testing.T) {
				b2 := client("b", "clinic-b", []string{"system/Patient.rs", "system/Observation.rs"}, "kb=tp-b", "kb2=tp-new")
				record(t, gateway(open(), "gw-1"), ClientChanges{Added: []string{"c"}, Changed: []string{"b"}, Removed: []string{"a"}}, b2, c)
				want := []clientEvent{
					{"D", "a", `registered client removed (it had tenant "clinic-a"; scopes system/Patient.rs; keys ka)`, "*", "gw-1"},
					{"U", "b", `registered client changed: scopes added: system/Patient.rs; keys replaced (another key under the same key id): kb2`, "*", "gw-1"},
					{"C", "c", `registered client added: tenant the default tenant (""); scopes system/*.rs; keys kc`, "*", "gw-1"},
				}
				if got := events(t); !reflect.DeepEqual(got, want) {
					t.Errorf("AuditEvents\n got %+v\nwant %+v", got, want)
				}
				v, err := Verify(ctx, st, clock())
				if err != nil || !v.Intact || v.HeadSeq != 5 {
					t.Errorf("Verify = %+v, %v; want intact, 5 records", v, err)
				}
				b = b2
			})
			t.Run("restart unchanged records nothing", func(t *testing.T) {
				record(t, gateway(open(), "gw-1"), ClientChanges{}, c, b)
				if got := events(t); len(got) != 0 {
					t.Errorf("AuditEvents %+v, want none", got)
				}
			})
			t.Run("two gateways starting at once record each change once", func(t *testing.T) {
				b3 := client("b", "clinic-c", []string{"system/Patient.rs"}, "kb3=tp-b3")
				set := []auth.Registration{b3}
				var wg sync.WaitGroup
				results := make([]ClientChanges, 4)
				for i := range results {
					l := gateway(open(), "gw-"+string(rune('a'+i)))
					wg.Add(1)
					go func() {
						defer wg.Done()
						var err error
						if results[i], err = l.RecordClients(ctx, set); err != nil {
							t.Error(err)
						}
					}()
				}
				wg.Wait()
				var all ClientChanges
				for _, r := range results {
					all.Added, all.Changed, all.Removed = append(all.Added, r.Added...), append(all.Changed, r.Changed...), append(all.Removed, r.Removed...)
				}
				if want := (ClientChanges{Changed: []string{"b"}, Removed: []string{"c"}}); !reflect.DeepEqual(all, want) {
					t.Errorf("the gateways recorded %+v, want %+v", all, want)
				}
				got := events(t)
				if len(got) != 2 || got[0].Action != "U" || got[1].Action != "D" ||
					got[0].Desc != `registered client changed: tenant "clinic-b" -> "clinic-c"; scopes removed: system/Observation.rs; keys added: kb3; keys removed: kb kb2` {
					t.Errorf("AuditEvents %+v, want b changed and c removed, once each", got)
				}
				v, err := Verify(ctx, st, clock())
				if err != nil || !v.Intact || v.HeadSeq != 7 {
					t.Errorf("Verify = %+v, %v; want intact, 7 records", v, err)
				}
			})
		})
	}
}
