package search

import "testing"

// BenchmarkLookup: a parameter looked up, as every parsed search clause,
// chain hop and compartment check does.
func BenchmarkLookup(b *testing.B) {
	for b.Loop() {
		if _, ok := Lookup("Observation", "code"); !ok {
			b.Fatal("Observation code not found")
		}
	}
}
