package console

import (
	"fmt"
	"html/template"
	"sort"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/operator"
)

// chart is one destination's backlog over the last hours, as an SVG drawn
// on the server (presentation attributes only: no style, no script) with
// a text summary for screen readers.
type chart struct {
	Destination string
	SVG         template.HTML
	Summary     string
}

// Chart geometry, in SVG user units.
const (
	chartW, chartH = 480.0, 120.0
	chartPad       = 28.0
)

// backlogCharts draws one chart per destination from the samples.
func backlogCharts(samples []operator.BacklogSample, now time.Time) []chart {
	type point struct {
		at            time.Time
		pending, dead int
	}
	series := map[string][]point{}
	for _, s := range samples {
		for _, b := range s.Destinations {
			series[b.Destination] = append(series[b.Destination], point{s.At, b.Pending, b.Dead})
		}
	}
	names := make([]string, 0, len(series))
	for n := range series {
		names = append(names, n)
	}
	sort.Strings(names)
	start := now.Add(-operator.BacklogWindow)
	var out []chart
	for _, name := range names {
		pts := series[name]
		top := 1
		for _, p := range pts {
			top = max(top, p.pending, p.dead)
		}
		x := func(t time.Time) float64 {
			return chartPad + (chartW-2*chartPad)*float64(t.Sub(start))/float64(operator.BacklogWindow)
		}
		y := func(v int) float64 { return chartH - chartPad - (chartH-2*chartPad)*float64(v)/float64(top) }
		line := func(val func(point) int) string {
			var b strings.Builder
			for _, p := range pts {
				fmt.Fprintf(&b, "%.1f,%.1f ", x(p.at), y(val(p)))
			}
			return strings.TrimSpace(b.String())
		}
		var svg strings.Builder
		fmt.Fprintf(&svg, `<svg class="chart" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img" aria-hidden="true" focusable="false">`,
			chartW, chartH, chartW, chartH)
		fmt.Fprintf(&svg, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#595959" stroke-width="1"/>`,
			chartPad, chartH-chartPad, chartW-chartPad, chartH-chartPad)
		fmt.Fprintf(&svg, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#595959" stroke-width="1"/>`,
			chartPad, chartPad, chartPad, chartH-chartPad)
		fmt.Fprintf(&svg, `<text x="%.0f" y="%.0f" font-size="11" text-anchor="end" fill="#1a1a1a">%d</text>`, chartPad-4, chartPad+4, top)
		fmt.Fprintf(&svg, `<text x="%.0f" y="%.0f" font-size="11" text-anchor="end" fill="#1a1a1a">0</text>`, chartPad-4, chartH-chartPad+4)
		fmt.Fprintf(&svg, `<text x="%.0f" y="%.0f" font-size="11" fill="#1a1a1a">6 h ago</text>`, chartPad, chartH-8)
		fmt.Fprintf(&svg, `<text x="%.0f" y="%.0f" font-size="11" text-anchor="end" fill="#1a1a1a">now</text>`, chartW-chartPad, chartH-8)
		if len(pts) == 1 {
			p := pts[0]
			fmt.Fprintf(&svg, `<circle cx="%.1f" cy="%.1f" r="3" fill="#0b5cad"/>`, x(p.at), y(p.pending))
			fmt.Fprintf(&svg, `<circle cx="%.1f" cy="%.1f" r="3" fill="#a4262c"/>`, x(p.at), y(p.dead))
		} else {
			fmt.Fprintf(&svg, `<polyline points="%s" fill="none" stroke="#0b5cad" stroke-width="2"/>`, line(func(p point) int { return p.pending }))
			fmt.Fprintf(&svg, `<polyline points="%s" fill="none" stroke="#a4262c" stroke-width="2" stroke-dasharray="4 3"/>`, line(func(p point) int { return p.dead }))
		}
		svg.WriteString(`</svg>`)
		last := pts[len(pts)-1]
		minP, maxP, minD, maxD := last.pending, last.pending, last.dead, last.dead
		for _, p := range pts {
			minP, maxP = min(minP, p.pending), max(maxP, p.pending)
			minD, maxD = min(minD, p.dead), max(maxD, p.dead)
		}
		out = append(out, chart{
			Destination: name,
			SVG:         template.HTML(svg.String()), // built above from numbers only
			// Both series the SVG draws (probe p26 F9: the dead one was left out).
			Summary: fmt.Sprintf("%s since %s: pending between %d and %d, dead between %d and %d; now %d pending and %d dead.",
				auditlog.Counted(len(pts), "sample"), when(pts[0].at), minP, maxP, minD, maxD, last.pending, last.dead),
		})
	}
	return out
}
