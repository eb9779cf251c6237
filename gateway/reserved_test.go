package gateway_test

import (
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// reservedClients are the clients of TestReservedIdentifiers, all of
// clinic-a: creator may only create Observations, full everything (and
// full-ingest also sends native records), ingester only sends native
// records.
var reservedClients = []auth.Client{
	{ID: "creator", Tenant: "clinic-a", Scopes: []string{"system/Observation.c"}},
	{ID: "full", Tenant: "clinic-a", Scopes: []string{"system/*.cruds"}},
	{ID: "full-ingest", Tenant: "clinic-a", Scopes: []string{"system/*.cruds", auth.ScopeIngest}},
	{ID: "ingester", Tenant: "clinic-a", Scopes: []string{auth.ScopeIngest}},
}

// TestReservedIdentifiers: the identifier systems the mappings mint
// (<base>/<source>/<namespace>) are the gateway's. A client that could
// write an Observation carrying the identifier of a clinic's next vitals
// record (predictable: the record id and the LOINC code) had the ingest's
// conditional create match it, and the record's heart rate was never
// stored (answer 200). A client's write that adds such an identifier is
// 403 identifier-reserved naming it, over every way of writing; keeping
// one a resource already carries, and criteria naming one, are fine. And
// an ingest whose conditional create matches a resource no record wrote
// (one stored before this rule) is 409 naming the entry, not 200.
func TestReservedIdentifiers(t *testing.T) {
	h, st, tok := clientsServer(t, reservedClients)
	const (
		system = "https://ketamine-gateway.org/fhir/sid/serenity-clinic-emr/vitals"
		value  = "VIT-2026-0310-001-8867-4" // the heart rate of pre-dose-baseline.json
	)
	squat := func(id string) string {
		s := `{"resourceType":"Observation","status":"entered-in-error","code":{"text":"squat"},` +
			`"identifier":[{"system":"http://other.example/ids","value":"x"},{"system":"` + system + `","value":"` + value + `"}]`
		if id != "" {
			s += `,"id":"` + id + `"`
		}
		return s + `}`
	}
	observations := func() int {
		t.Helper()
		rec := req(h, "GET", "/fhir/Observation?_summary=count", "", tok["full"])
		n, ok := decode(t, rec)["total"].(float64)
		if !ok {
			t.Fatalf("count = %d %s", rec.Code, rec.Body)
		}
		return int(n)
	}
	plain := req(h, "POST", "/fhir/Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"}}`, tok["full"])
	if plain.Code != http.StatusCreated {
		t.Fatalf("create = %d %s", plain.Code, plain.Body)
	}
	plainID := decode(t, plain)["id"].(string)
	tx := func(kind, request, resource string) string {
		return `{"resourceType":"Bundle","type":"` + kind + `","entry":[{"resource":` + resource + `,"request":` + request + `}]}`
	}
	before := observations()
	for _, tc := range []struct {
		name, client, method, target, body, header string
		expr                                       string
	}{
		{"create", "creator", "POST", "/fhir/Observation", squat(""), "", "Observation.identifier[1].system"},
		{"create, full scopes", "full", "POST", "/fhir/Observation", squat(""), "", "Observation.identifier[1].system"},
		{"conditional create", "full", "POST", "/fhir/Observation", squat(""), "If-None-Exist: identifier=http://other.example/ids|x",
			"Observation.identifier[1].system"},
		{"transaction create", "creator", "POST", "/fhir", tx("transaction", `{"method":"POST","url":"Observation"}`, squat("")), "",
			"Bundle.entry[0].resource.ofType(Observation).identifier[1].system"},
		{"update adding one", "full", "PUT", "/fhir/Observation/" + plainID, squat(plainID), "", "Observation.identifier[1].system"},
		{"transaction update adding one", "full", "POST", "/fhir", tx("transaction", `{"method":"PUT","url":"Observation/`+plainID+`"}`, squat(plainID)), "",
			"Bundle.entry[0].resource.ofType(Observation).identifier[1].system"},
		{"patch adding one", "full", "PATCH", "/fhir/Observation/" + plainID,
			`[{"op":"add","path":"/identifier","value":[{"system":"` + system + `/","value":"` + value + `"}]}]`,
			"Content-Type: application/json-patch+json", "Observation.identifier[0].system"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := req(h, tc.method, tc.target, tc.body, tok[tc.client], tc.header)
			if tc.target == "/fhir" {
				assertOutcome(t, rec, http.StatusForbidden, "identifier-reserved", "")
				return
			}
			assertIssue(t, rec, http.StatusForbidden, "identifier-reserved", tc.expr)
		})
	}
	rec := req(h, "POST", "/fhir", tx("batch", `{"method":"POST","url":"Observation"}`, squat("")), tok["creator"])
	if status, rule, _ := batchEntryOutcome(t, rec, 0); !strings.HasPrefix(status, "403") || rule != "identifier-reserved" {
		t.Errorf("batch entry carrying a reserved identifier = %s %s, want 403 identifier-reserved", status, rule)
	}
	if got := observations(); got != before {
		t.Errorf("%d Observations written by the refused writes, want none", got-before)
	}
	// A client that may send native records could have the gateway mint
	// the identifier anyway (and a gateway that is another's destination
	// receives them so).
	if rec := req(h, "POST", "/fhir/Observation", squat(""), tok["full-ingest"]); rec.Code != http.StatusCreated {
		t.Errorf("create carrying a reserved identifier by a client with gateway/ingest = %d %s, want 201", rec.Code, rec.Body)
	} else if rec := req(h, "DELETE", "/fhir/Observation/"+decode(t, rec)["id"].(string), "", tok["full"]); rec.Code != http.StatusNoContent {
		t.Fatalf("delete = %d %s", rec.Code, rec.Body)
	}

	// The records store, and a client may correct what a record made,
	// keeping its identifiers.
	for _, f := range []string{"post-dose-40min.json", "pre-dose-baseline.json"} {
		body, err := os.ReadFile("../schemas/examples/vitals/" + f)
		if err != nil {
			t.Fatal(err)
		}
		if f == "pre-dose-baseline.json" {
			// A squat stored before identifiers were reserved: no record
			// wrote it.
			doc := map[string]any{"resourceType": "Observation", "status": "entered-in-error", "code": map[string]any{"text": "squat"},
				"identifier": []any{map[string]any{"system": system, "value": value}}}
			if err := st.Write(t.Context(), func(tx store.Tx) error {
				r, entries, err := store.NewVersion("Observation", "squatted", 1, doc, time.Now())
				if err != nil {
					return err
				}
				r.Tenant = "clinic-a"
				return tx.Put(r, entries)
			}); err != nil {
				t.Fatal(err)
			}
			rec := req(h, "POST", "/ingest/vitals", string(body), tok["ingester"], "Content-Type: application/json")
			assertOutcome(t, rec, http.StatusConflict, "record-resource-foreign", "")
			if !strings.Contains(rec.Body.String(), "entry") || strings.Contains(rec.Body.String(), "squatted") {
				t.Errorf("the refusal should name the entry and not the resource it matched: %s", rec.Body)
			}
			continue
		}
		rec := req(h, "POST", "/ingest/vitals", string(body), tok["ingester"], "Content-Type: application/json")
		if rec.Code != http.StatusOK {
			t.Fatalf("ingest %s = %d %s", f, rec.Code, rec.Body)
		}
		// Again: the ledger answers; a conditional create matching the
		// record's own resources is the gateway's.
		if rec := req(h, "POST", "/ingest/vitals", string(body), tok["ingester"], "Content-Type: application/json"); rec.Code != http.StatusOK {
			t.Fatalf("ingest %s again = %d %s", f, rec.Code, rec.Body)
		}
		rec = req(h, "GET", "/fhir/Observation?identifier=https://ketamine-gateway.org/fhir/sid/serenity-clinic-emr/vitals|VIT-2026-0310-002-8867-4", "", tok["full"])
		b := decode(t, rec)
		entries, _ := b["entry"].([]any)
		if len(entries) != 1 {
			t.Fatalf("the record's heart rate: %s", rec.Body)
		}
		obs := entries[0].(map[string]any)["resource"].(map[string]any)
		obs["status"] = "amended"
		raw, _ := json.Marshal(obs)
		if rec := req(h, "PUT", "/fhir/Observation/"+obs["id"].(string), string(raw), tok["full"]); rec.Code != http.StatusOK {
			t.Errorf("a client's correction of a record's Observation, keeping its identifier = %d %s, want 200", rec.Code, rec.Body)
		}
		// Criteria may name a reserved identifier (a search of it).
		obs["status"] = "final"
		delete(obs, "id")
		raw, _ = json.Marshal(obs)
		if rec := req(h, "PUT", "/fhir/Observation?identifier="+system+"|VIT-2026-0310-002-8867-4", string(raw), tok["full"]); rec.Code != http.StatusOK {
			t.Errorf("a conditional update by the reserved identifier, keeping it = %d %s, want 200", rec.Code, rec.Body)
		}
	}
}

// TestValidateReservedIdentifiers: $validate reports what the write it
// stands for would refuse, identifier-reserved included (a create, or an
// update adding an identifier in a system the gateway mints, was valid
// by $validate and then 403 at the write): an error issue naming the
// identifier, in mode create and update; an update keeping an identifier
// the stored version carries, and a client that may send native records,
// are valid as their writes are.
func TestValidateReservedIdentifiers(t *testing.T) {
	h, _, tok := clientsServer(t, reservedClients)
	const system = "https://ketamine-gateway.org/fhir/sid/serenity-clinic-emr/vitals"
	obs := func(id string) string {
		s := `{"resourceType":"Observation","status":"final","code":{"text":"x"},` +
			`"identifier":[{"system":"http://other.example/ids","value":"x"},{"system":"` + system + `","value":"V-1"}]`
		if id != "" {
			s += `,"id":"` + id + `"`
		}
		return s + `}`
	}
	plain := req(h, "POST", "/fhir/Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"}}`, tok["full"])
	if plain.Code != http.StatusCreated {
		t.Fatalf("create = %d %s", plain.Code, plain.Body)
	}
	plainID := decode(t, plain)["id"].(string)
	minted := req(h, "POST", "/fhir/Observation", obs(""), tok["full-ingest"])
	if minted.Code != http.StatusCreated {
		t.Fatalf("create by a client with gateway/ingest = %d %s", minted.Code, minted.Body)
	}
	mintedID := decode(t, minted)["id"].(string)
	for _, tc := range []struct {
		name, client, target, body string
		expr                       string // "" valid
	}{
		{"create", "full", "/fhir/Observation/$validate?mode=create", obs(""), "Observation.identifier[1].system"},
		{"create at the system level", "full", "/fhir/$validate?mode=create", obs(""), "Observation.identifier[1].system"},
		{"update adding one", "full", "/fhir/Observation/" + plainID + "/$validate?mode=update", obs(plainID), "Observation.identifier[1].system"},
		{"update adding one, at the type", "full", "/fhir/Observation/$validate?mode=update", obs(plainID), "Observation.identifier[1].system"},
		{"update keeping one", "full", "/fhir/Observation/" + mintedID + "/$validate?mode=update", obs(mintedID), ""},
		{"create by a client with gateway/ingest", "full-ingest", "/fhir/Observation/$validate?mode=create", obs(""), ""},
		// No mode is general validation: the content, not a write's rules.
		{"no mode", "full", "/fhir/Observation/$validate", obs(""), ""},
		{"no mode at the instance", "full", "/fhir/Observation/" + plainID + "/$validate", obs(plainID), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := req(h, "POST", tc.target, tc.body, tok[tc.client])
			if rec.Code != http.StatusOK {
				t.Fatalf("POST %s = %d %s, want 200", tc.target, rec.Code, rec.Body)
			}
			is := issues(t, decode(t, rec))
			if tc.expr == "" {
				if hasIssue(is, "identifier-reserved", "") {
					t.Errorf("POST %s = %v, want no identifier-reserved", tc.target, is)
				}
				return
			}
			if !hasIssue(is, "identifier-reserved", tc.expr) {
				t.Errorf("POST %s = %v, want identifier-reserved at %s", tc.target, is, tc.expr)
			}
			for _, i := range is {
				if i["rule"] == "identifier-reserved" && i["severity"] != "error" {
					t.Errorf("POST %s: identifier-reserved is %s, want an error", tc.target, i["severity"])
				}
			}
		})
	}
}
