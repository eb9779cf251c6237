package postgres

import (
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/storetest"
)

func BenchmarkZZSearchNoAnalyze(b *testing.B) {
	testURL(b)
	s, _ := openFresh(b, Options{})
	storetest.BenchmarkSearch(b, s, nil)
}

func BenchmarkZZSearchTenantsNoAnalyze(b *testing.B) {
	testURL(b)
	s, _ := openFresh(b, Options{})
	storetest.BenchmarkSearch(b, s, nil, "clinic-a", "clinic-b", "clinic-c", "clinic-d")
}
