package sqlstore

import (
	"net/url"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// TestWalked: which searches walk the date index of their first sort key
// (see walked), and which find their matches by their criteria.
func TestWalked(t *testing.T) {
	cursor := &search.Cursor{Keys: []int64{1}, ID: "x"}
	tests := []struct {
		name, raw string
		edit      func(q *search.Query)
		want      bool
	}{
		{"descending", "_sort=-date", nil, true},
		{"ascending, then _id", "_sort=date,_id", nil, true},
		{"a code", "_sort=-date&code=8867-4", nil, true},
		{"a status and a code", "_sort=date&status=final&code=8867-4", nil, true},
		{"a range of the sorted date", "_sort=date&date=ge2026", nil, false},
		{"a range of the sorted date, descending", "_sort=-date&date=le2020", nil, false},
		{"date:missing", "_sort=date&date:missing=true", nil, false},
		{"a _lastUpdated range", "_sort=-date&_lastUpdated=le2020", nil, false},
		{"a cursor and an offset", "_sort=-date", func(q *search.Query) { q.After, q.Offset = cursor, 40 }, true},
		{"by _lastUpdated", "_sort=-_lastUpdated,date", nil, false},
		{"by _id", "_sort=_id", nil, false},
		{"the default order", "code=8867-4", nil, false},
		{"an offset without a cursor", "_sort=-date", func(q *search.Query) { q.Offset = 40 }, false},
		{"every type", "_sort=-date", func(q *search.Query) { q.Type = "" }, false},
		{"_id", "_sort=-date&_id=a,b", nil, false},
		{"identifier", "_sort=-date&identifier=urn:x|1", nil, false},
		{"a patient", "_sort=-date&patient=Patient/p1", nil, false},
		{"a chain", "_sort=-date&patient.identifier=urn:x|1", nil, false},
		{"a code:not", "_sort=-date&code:not=8867-4", nil, true},
		{"subject:missing", "_sort=-date&subject:missing=true", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := url.ParseQuery(tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			q, err := search.Parse("Observation", v, false)
			if err != nil {
				t.Fatal(err)
			}
			if tc.edit != nil {
				tc.edit(q)
			}
			if got := walked(q); got != tc.want {
				t.Errorf("walked(%s) = %v, want %v", tc.raw, got, tc.want)
			}
		})
	}
}
