package fhirwire

import "testing"

func TestWarnings(t *testing.T) {
	tests := []struct {
		name, answer string
		want         int
	}{
		{"outcome", `{"resourceType":"OperationOutcome","issue":[{"severity":"warning"},{"severity":"information"},{"severity":"warning"}]}`, 2},
		{"bundle", `{"resourceType":"Bundle","type":"transaction-response","entry":[
			{"response":{"status":"201 Created","outcome":{"resourceType":"OperationOutcome","issue":[{"severity":"warning"}]}}},
			{"response":{"status":"200 OK"}},
			{"response":{"status":"200 OK","outcome":{"resourceType":"OperationOutcome","issue":[{"severity":"warning"},{"severity":"error"}]}}}]}`, 2},
		{"no issues", `{"resourceType":"Bundle","type":"batch-response","entry":[{"response":{"status":"200 OK"}}]}`, 0},
		{"not JSON", `<html>busy</html>`, 0},
		{"empty", ``, 0},
		{"issue of wrong shape", `{"resourceType":"OperationOutcome","issue":"warning"}`, 0},
	}
	for _, tt := range tests {
		if got := Warnings([]byte(tt.answer)); got != tt.want {
			t.Errorf("%s: Warnings = %d, want %d", tt.name, got, tt.want)
		}
	}
}
