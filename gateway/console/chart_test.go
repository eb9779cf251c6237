package console

import (
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/operator"
)

// TestChartSummaryTellsDeadTrend: the chart's text summary, all a screen
// reader gets of it (the SVG is hidden), tells the range of both series it
// draws, dead letters as well as pending deliveries (probe p26 F9).
func TestChartSummaryTellsDeadTrend(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	var samples []operator.BacklogSample
	for i, b := range []struct{ pending, dead int }{{3, 2}, {0, 9}, {1, 5}} {
		samples = append(samples, operator.BacklogSample{At: now.Add(time.Duration(i-3) * time.Hour),
			Destinations: []operator.Backlog{{Destination: "ehr", Pending: b.pending, Dead: b.dead}}})
	}
	charts := backlogCharts(samples, now)
	if len(charts) != 1 {
		t.Fatalf("backlogCharts = %d charts, want 1", len(charts))
	}
	for _, want := range []string{"pending between 0 and 3", "dead between 2 and 9", "now 1 pending and 5 dead"} {
		if !strings.Contains(charts[0].Summary, want) {
			t.Errorf("backlogCharts summary = %q, want %q in it", charts[0].Summary, want)
		}
	}
}
