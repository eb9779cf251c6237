package engine_test

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
)

// TestGranularSecurityLabelSearch: _security, _profile and _tag search
// (finding p43 F2) are confined by a granular scope as every other
// parameter is: a reader of vital signs only that searches the PSY label
// or the profile both Observations carry finds the vital sign, never the
// PHQ-9 its scope hides, and its total counts only what it may see.
func TestGranularSecurityLabelSearch(t *testing.T) {
	c := newChart(t)
	ctx := context.Background()
	const (
		actCode = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
		profile = "http://hl7.org/fhir/StructureDefinition/Observation"
	)
	// Both Observations get the PSY label, the profile and a tag.
	for _, o := range []struct{ id, cat, code string }{{c.vital, "vital-signs", "85354-9"}, {c.phq9, "survey", "44261-6"}} {
		doc := observation(o.cat, o.code, "Patient/"+c.patient)
		doc["id"] = o.id
		doc["meta"] = map[string]any{
			"security": []any{map[string]any{"system": actCode, "code": "PSY"}},
			"profile":  []any{profile},
			"tag":      []any{map[string]any{"system": "urn:test", "code": "t1"}},
		}
		b, _ := json.Marshal(doc)
		if _, err := c.a.Engine.Update(ctx, clinic("update"), "Observation", o.id, func() ([]byte, error) { return b, nil },
			engine.Preconditions{}); err != nil {
			t.Fatalf("update %s: %v", o.id, err)
		}
	}
	for _, tc := range []struct {
		name, scopes string
		params       url.Values
		want         []string
	}{
		{"PSY, restricted", hospitalScope, url.Values{"_security": {"PSY"}}, []string{c.vital}},
		{"PSY with system, restricted", hospitalScope, url.Values{"_security": {actCode + "|PSY"}}, []string{c.vital}},
		{"not PSY, restricted", hospitalScope, url.Values{"_security:not": {"PSY"}}, []string{}},
		{"profile, restricted", hospitalScope, url.Values{"_profile": {profile}}, []string{c.vital}},
		{"tag, restricted", hospitalScope, url.Values{"_tag": {"urn:test|t1"}}, []string{c.vital}},
		{"PSY and the PHQ-9's code, restricted", hospitalScope, url.Values{"_security": {"PSY"}, "code": {"44261-6"}}, []string{}},
		{"PSY, unrestricted", "system/Observation.rs", url.Values{"_security": {"PSY"}}, []string{c.vital, c.phq9}},
		{"profile, unrestricted", "system/Observation.rs", url.Values{"_profile": {profile}}, []string{c.vital, c.phq9}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := c.a.Engine.Search(ctx, hospital("search-type", tc.scopes), "Observation", tc.params, false)
			if err != nil {
				t.Fatal(err)
			}
			got := []string{}
			for _, r := range res.Page.Matches {
				got = append(got, r.ID)
			}
			slices.Sort(got)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(got, want) || res.Page.Total != len(want) || res.Withheld != 0 {
				t.Errorf("Search(Observation?%s) = %v, total %d, withheld %d; want %v, total %d, none withheld",
					tc.params.Encode(), got, res.Page.Total, res.Withheld, want, len(want))
			}
		})
	}
}
