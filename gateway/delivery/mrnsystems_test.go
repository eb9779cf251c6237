package delivery

import (
	"encoding/json"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// withMRN is sessionBundle's payload with its Patient carrying an MRN of
// system identSystem as an MR-typed identifier (when identSystem is set)
// and a token of tokenSystem in its ifNoneExist (when set): a delivery as
// ingest built it before a destination's mrnSystems left those out.
func withMRN(t *testing.T, identSystem, tokenSystem string) []byte {
	t.Helper()
	var b map[string]any
	if err := json.Unmarshal(sessionBundle("P-1", "S-1", "completed", false), &b); err != nil {
		t.Fatal(err)
	}
	e := b["entry"].([]any)[0].(map[string]any)
	if identSystem != "" {
		p := e["resource"].(map[string]any)
		p["identifier"] = append(p["identifier"].([]any), map[string]any{"system": identSystem, "value": "M,1",
			"type": map[string]any{"coding": []any{map[string]any{"system": mapping.SystemV2IDType, "code": "MR"}}}})
	}
	if tokenSystem != "" {
		r := e["request"].(map[string]any)
		r["ifNoneExist"] = r["ifNoneExist"].(string) + "," + tokens[tokenSystem]
	}
	data, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// tokens are the MRN tokens of withMRN's ifNoneExist by system, escaped as
// the mapping escapes them (FHIR's \ escapes, then percent-encoding).
var tokens = map[string]string{mine: `urn:oid:1.2.3%5C|h1|M%5C,1`, other: `urn:h2|M%5C,1`}

const mine, other = "urn:oid:1.2.3|h1", "urn:h2"

// TestMRNSystemsBuiltBefore: a delivery built before its destination's
// mrnSystems was set or changed (queued, retried, or a dead letter put
// back) that carries an MRN of a system the destination does not know, as
// an identifier or in its ifNoneExist, is not sent there: a dead letter
// saying to replay the record, with no AuditEvent of a transmission. One
// with only the MRNs of its systems, or to a destination without
// mrnSystems, is sent.
func TestMRNSystemsBuiltBefore(t *testing.T) {
	for _, tc := range []struct {
		name         string
		systems      []string
		ident, token string
		refused      bool
	}{
		{"other identifier", []string{mine}, other, "", true},
		{"other token", []string{mine}, "", other, true},
		{"none known", []string{}, mine, mine, true},
		{"own MRN", []string{mine}, mine, mine, false},
		{"no MRN", []string{}, "", "", false},
		{"every MRN", nil, other, other, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ehr := newStubEHR(t)
			d := testDest("ehr", ehr.base())
			d.MRNSystems = tc.systems
			ev, audited := sendOne(t, d, withMRN(t, tc.ident, tc.token))
			if !tc.refused {
				wantAttempt(t, ev, 1, store.StatusDone, 200, "")
				return
			}
			wantNotSent(t, ev, ehr, audited, "not sent: built before mrnSystems was set")
		})
	}
}

// TestKnowsMRNsReadsCriteria: the MRN systems the mapping writes into a
// Patient's ifNoneExist (mapping.Entry.DeliverCriteria, whatever their
// characters) are read back as the engine reads conditional criteria: a
// destination that knows every one of them is sent the Patient, one that
// lacks any is not, wherever the Patient stands in the Bundle.
func TestKnowsMRNsReadsCriteria(t *testing.T) {
	for _, tc := range []struct {
		name string
		mrns []mapping.MRN
	}{
		{"none", nil},
		{"one", []mapping.MRN{{System: "urn:h1", Value: "M1"}}},
		{"escapes", []mapping.MRN{{System: `urn:a|b,c\d$e f&g%`, Value: `v,|\$`}, {System: "urn:h2", Value: "x"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := mapping.Entry{IfNoneExist: "identifier=https://example.org/sid/patient|P-1"}
			e.DeliverMatching(tc.mrns)
			var systems []string
			for _, m := range tc.mrns {
				systems = append(systems, m.System)
			}
			for _, first := range []bool{true, false} {
				patient := map[string]any{"fullUrl": "urn:uuid:p", "resource": map[string]any{"resourceType": "Patient"},
					"request": map[string]any{"method": "POST", "url": "Patient", "ifNoneExist": e.DeliverCriteria()}}
				other := map[string]any{"fullUrl": "urn:uuid:o", "resource": map[string]any{"resourceType": "Observation"},
					"request": map[string]any{"method": "POST", "url": "Observation"}}
				entries := []any{patient, other}
				if !first {
					entries = []any{other, patient}
				}
				payload, err := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": entries})
				if err != nil {
					t.Fatal(err)
				}
				if d := (&Destination{MRNSystems: append([]string{}, systems...)}); !d.knowsMRNs(payload) {
					t.Errorf("first=%v: a destination knowing %q is refused %s", first, systems, e.DeliverCriteria())
				}
				if len(systems) > 0 {
					if d := (&Destination{MRNSystems: systems[1:]}); d.knowsMRNs(payload) {
						t.Errorf("first=%v: a destination not knowing %q is sent %s", first, systems[0], e.DeliverCriteria())
					}
				}
			}
		})
	}
}
