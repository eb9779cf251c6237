package telemetry

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

func TestMetrics(t *testing.T) {
	tel, _, reader := NewForTest()
	shutdown(t, tel)
	m, err := NewMetrics(tel.MeterProvider())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.Close() }()
	ctx := context.Background()
	m.IngestRecord(ctx, "hl7v2", "accepted")
	m.IngestRecord(ctx, "hl7v2", "accepted")
	m.ValidationFailure(ctx, "patient-birthdate")
	m.DeliveryAttempt(ctx, "ehr-primary", "success", 250*time.Millisecond)
	m.RegisterBacklog(func(context.Context) []BacklogStat {
		return []BacklogStat{{Destination: "ehr-primary", Pending: 7, OldestPendingAge: 90 * time.Second, Dead: 3, Held: true}}
	})
	m.RegisterSettings(func() int64 { return 2 })
	m.RegisterCapabilities(func() []CapabilityStat {
		return []CapabilityStat{{Destination: "ehr-primary", Unsupported: 2, UndeclaredFlags: 1}, {Destination: "lab", CheckFailed: true}}
	})

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	sumPoint := func(name string) metricdata.DataPoint[int64] {
		t.Helper()
		dps := findMetric(t, rm, name).Data.(metricdata.Sum[int64]).DataPoints
		if len(dps) != 1 {
			t.Fatalf("%s: datapoints %+v", name, dps)
		}
		return dps[0]
	}
	has := func(s attribute.Set, k, v string) bool {
		got, ok := s.Value(attribute.Key(k))
		return ok && got.AsString() == v
	}
	if dp := sumPoint(MetricIngestRecords); dp.Value != 2 || !has(dp.Attributes, "ingest.kind", "hl7v2") || !has(dp.Attributes, "fhir.outcome", "accepted") {
		t.Errorf("ingest = %+v", dp)
	}
	if dp := sumPoint(MetricValidationFailures); dp.Value != 1 || !has(dp.Attributes, "validation.rule", "patient-birthdate") {
		t.Errorf("validation = %+v", dp)
	}
	if dp := sumPoint(MetricDeliveryAttempts); dp.Value != 1 || !has(dp.Attributes, "delivery.destination", "ehr-primary") || !has(dp.Attributes, "delivery.outcome", "success") {
		t.Errorf("delivery attempts = %+v", dp)
	}
	h := findMetric(t, rm, MetricDeliveryDuration)
	if hd := h.Data.(metricdata.Histogram[float64]).DataPoints; h.Unit != "s" || len(hd) != 1 || hd[0].Sum != 0.25 || hd[0].Count != 1 {
		t.Errorf("delivery duration = %+v", h)
	}
	if dps := findMetric(t, rm, MetricDeliveryBacklog).Data.(metricdata.Gauge[int64]).DataPoints; len(dps) != 1 || dps[0].Value != 7 || !has(dps[0].Attributes, "delivery.destination", "ehr-primary") {
		t.Errorf("backlog = %+v", dps)
	}
	for name, want := range map[string]int64{MetricDeliveryDead: 3, MetricDeliveryHeld: 1} {
		if dps := findMetric(t, rm, name).Data.(metricdata.Gauge[int64]).DataPoints; len(dps) != 1 || dps[0].Value != want || !has(dps[0].Attributes, "delivery.destination", "ehr-primary") {
			t.Errorf("%s = %+v, want %d for ehr-primary", name, dps, want)
		}
	}
	if dps := findMetric(t, rm, MetricOldestPendingAge).Data.(metricdata.Gauge[float64]).DataPoints; len(dps) != 1 || dps[0].Value != 90 {
		t.Errorf("oldest pending age = %+v", dps)
	}

	if dps := findMetric(t, rm, MetricSettingsDiffering).Data.(metricdata.Gauge[int64]).DataPoints; len(dps) != 1 || dps[0].Value != 2 {
		t.Errorf("settings differing = %+v, want 2", dps)
	}

	// Every destination is reported, 0 included: an alert on the value
	// finds the series.
	for name, want := range map[string]map[string]int64{
		MetricDeliveryUnsupported:      {"ehr-primary": 2, "lab": 0},
		MetricDeliveryCapabilityFailed: {"ehr-primary": 0, "lab": 1},
		MetricDeliveryUndeclaredFlags:  {"ehr-primary": 1, "lab": 0},
	} {
		got := map[string]int64{}
		for _, dp := range findMetric(t, rm, name).Data.(metricdata.Gauge[int64]).DataPoints {
			d, _ := dp.Attributes.Value("delivery.destination")
			got[d.AsString()] = dp.Value
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}

	// nil stops backlog reporting.
	m.RegisterBacklog(nil)
	m.RegisterSettings(nil)
	m.RegisterCapabilities(nil)
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			if g, ok := mt.Data.(metricdata.Gauge[int64]); ok && len(g.DataPoints) != 0 {
				t.Errorf("%s still reported: %+v", mt.Name, g.DataPoints)
			}
		}
	}
}

func TestNilMetricsIsNoop(t *testing.T) {
	var m *Metrics
	ctx := context.Background()
	m.IngestRecord(ctx, "k", "o")
	m.ValidationFailure(ctx, "r")
	m.DeliveryAttempt(ctx, "d", "o", time.Second)
	m.RegisterBacklog(nil)
	if err := m.Close(); err != nil {
		t.Error(err)
	}
}
