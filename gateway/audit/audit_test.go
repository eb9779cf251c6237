package audit

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestEventShape(t *testing.T) {
	tests := []struct {
		name    string
		r       Record
		action  string
		outcome string
	}{
		{"create ok", Record{Interaction: "create", Status: 201, Entities: []Entity{{Type: "Observation", ID: "o1", Version: 1}}}, "C", "0"},
		{"read missing", Record{Interaction: "read", Status: 404}, "R", "4"},
		{"search", Record{Interaction: "search-type", Status: 200}, "E", "0"},
		{"update failed", Record{Interaction: "update", Status: 500}, "U", "8"},
		{"unknown interaction", Record{Interaction: "frob", Status: 401}, "E", "4"},
		{"ingest", Record{Interaction: "ingest", Status: 200}, "C", "0"},
		{"ingest of a new version", Record{Interaction: "ingest", Action: "U", Status: 200}, "U", "0"},
		{"ingest dry run", Record{Interaction: "ingest", Action: "E", Status: 200}, "E", "0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.r.Recorded = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
			tc.r.Observer, tc.r.TraceID, tc.r.RequestID, tc.r.Patients = "gw-1", "4bf92f3577b34da6a3ce929d0e0e4736", "req-1", []string{"Patient/p1"}
			ev := Event(tc.r)
			if ev["action"] != tc.action || ev["outcome"] != tc.outcome {
				t.Errorf("Event() action %v outcome %v, want %s %s", ev["action"], ev["outcome"], tc.action, tc.outcome)
			}
			b, _ := json.Marshal(ev)
			for _, want := range []string{`"resourceType":"AuditEvent"`, `"code":"rest"`, `"recorded":"2026-11-25T10:00:00.000Z"`,
				`"reference":"Patient/p1"`, `4bf92f3577b34da6a3ce929d0e0e4736`, `"value":"req-1"`} {
				if !strings.Contains(string(b), want) {
					t.Errorf("AuditEvent lacks %s: %s", want, b)
				}
			}
		})
	}
	b, _ := json.Marshal(Event(Record{Interaction: "create", Status: 201, Entities: []Entity{{Type: "Observation", ID: "o1", Version: 3}}}))
	if !strings.Contains(string(b), `Observation/o1/_history/3`) {
		t.Errorf("entity version missing: %s", b)
	}
}

func chain(n int) []ChainEntry {
	var out []ChainEntry
	prev := ""
	for i := 1; i <= n; i++ {
		body := []byte(`{"resourceType":"AuditEvent","id":"a` + string(rune('0'+i)) + `"}`)
		h := Link(prev, body)
		out = append(out, ChainEntry{Seq: int64(i), Hash: h, Body: body})
		prev = h
	}
	return out
}

func verify(entries []ChainEntry) error {
	var v Verifier
	for _, e := range entries {
		if err := v.Add(e); err != nil {
			return err
		}
	}
	return nil
}

func TestChain(t *testing.T) {
	if err := verify(chain(5)); err != nil {
		t.Fatalf("intact chain: %v", err)
	}
	tests := []struct {
		name   string
		mutate func([]ChainEntry) []ChainEntry
		broken int64
	}{
		{"body changed", func(c []ChainEntry) []ChainEntry { c[2].Body = []byte(`{"changed":true}`); return c }, 3},
		{"hash changed", func(c []ChainEntry) []ChainEntry { c[1].Hash = Link("", []byte("x")); return c }, 2},
		{"record deleted", func(c []ChainEntry) []ChainEntry { return append(c[:3], c[4:]...) }, 4},
		{"records swapped", func(c []ChainEntry) []ChainEntry { c[1], c[2] = c[2], c[1]; return c }, 2},
		{"rewritten suffix", func(c []ChainEntry) []ChainEntry {
			c[3].Body = []byte(`{"forged":1}`)
			c[3].Hash = Link("not-the-previous", c[3].Body)
			return c
		}, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := verify(tc.mutate(chain(5)))
			var bl *BrokenLink
			if !errors.As(err, &bl) || bl.Seq != tc.broken {
				t.Errorf("verify = %v, want broken at %d", err, tc.broken)
			}
		})
	}
}

// TestSameRequest: a further part or share of a request's AuditEvent
// keeps every field of the request (a field added to Record is kept
// unless listed here as what a record names or says), and nothing of
// what the first record names.
func TestSameRequest(t *testing.T) {
	named := map[string]bool{"ID": true, "Patients": true, "Entities": true, "Identified": true, "Description": true, "Attempt": true}
	var r Record
	rv := reflect.ValueOf(&r).Elem()
	for i := range rv.NumField() {
		f := rv.Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString("v" + rv.Type().Field(i).Name)
		case reflect.Int:
			f.SetInt(int64(i + 1))
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Slice:
			f.Set(reflect.MakeSlice(f.Type(), 1, 1))
		case reflect.Struct:
			f.Set(reflect.ValueOf(time.Unix(1e9, 0)))
		case reflect.Pointer:
			f.Set(reflect.New(f.Type().Elem()))
		default:
			t.Fatalf("field %s of kind %s: set it here", rv.Type().Field(i).Name, f.Kind())
		}
	}
	got := reflect.ValueOf(r.SameRequest("new"))
	for i := range rv.NumField() {
		name := rv.Type().Field(i).Name
		switch {
		case name == "ID":
			if got.Field(i).String() != "new" {
				t.Errorf("ID = %q, want the one given", got.Field(i).String())
			}
		case named[name]:
			if !got.Field(i).IsZero() {
				t.Errorf("%s kept: a further record names and says its own", name)
			}
		case !reflect.DeepEqual(got.Field(i).Interface(), rv.Field(i).Interface()):
			t.Errorf("%s = %v, want the request's %v", name, got.Field(i).Interface(), rv.Field(i).Interface())
		}
	}
}

// TestShareWording: the description a share is written with
// (ShareDescription) is what SharedWith and IsShare read back, for a named
// tenant and the default one, after failure rules and before what the
// share names; the whole record's description is not a share.
func TestShareWording(t *testing.T) {
	for _, tc := range []struct {
		tenant, other string
	}{
		{"clinic-a", "clinic-b"},
		{"", "clinic-a"},
	} {
		desc := "HTTP 403 Forbidden (rule x); " + ShareDescription(tc.tenant) + " (its data named here: 1 resource)"
		body, _ := json.Marshal(map[string]string{"outcomeDesc": desc})
		if !IsShare(desc) || !SharedWith(body, tc.tenant) || SharedWith(body, tc.other) {
			t.Errorf("share of %q: IsShare %t, SharedWith(its tenant) %t, SharedWith(%q) %t; want true, true, false",
				tc.tenant, IsShare(desc), SharedWith(body, tc.tenant), tc.other, SharedWith(body, tc.other))
		}
	}
	if IsShare("HTTP 200 OK: an all-tenant client's request, its whole record") {
		t.Error("IsShare of a whole record's description = true")
	}
}

// TestClientRegistrationEvent: a change of the registered clients is a
// DICOM 110137 User Security Attributes Changed event, the gateway its
// requesting agent, the client an entity by identifier, its outcomeDesc
// the change alone (no HTTP exchange).
func TestClientRegistrationEvent(t *testing.T) {
	r := Record{ID: "a1", Recorded: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), Interaction: "client-registration",
		Action: "D", Observer: "gw-1", Tenant: "clinic-a", ByGateway: true, NoHTTP: true,
		Identified:  []Identified{{System: SystemClient, Value: "old-ehr", Description: "the registered client"}},
		Description: "registered client removed"}
	b, _ := json.Marshal(Event(r))
	for _, want := range []string{`"type":{"code":"110137","display":"User Security Attributes Changed","system":"http://dicom.nema.org/resources/ontology/DCM"}`,
		`"subtype":[{"code":"client-registration"`, `"action":"D"`, `"outcome":"0"`, `"outcomeDesc":"registered client removed"`,
		`"requestor":true,"type":{"coding":[{"code":"110153","display":"Source Role ID","system":"http://dicom.nema.org/resources/ontology/DCM"}]},"who":{"display":"gw-1"}`,
		`"what":{"identifier":{"system":"https://ketamine-gateway.org/fhir/sid/client","value":"old-ehr"}}`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("Event(client-registration) lacks %s: %s", want, b)
		}
	}
	if sys, code := Subtype("client-registration"); sys != SystemGatewayInteraction || code != "client-registration" || InteractionOf(sys, code) != "client-registration" {
		t.Errorf("Subtype(client-registration) = %s %s", sys, code)
	}
}
