package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/telemetry"
)

// TestRefusalsCounted: a request refused for back-pressure (here the rate
// limit's 429) is counted in gateway.requests.refused by the rule it was
// answered with; a request served is not.
func TestRefusalsCounted(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "kg.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tel, _, reader := telemetry.NewForTest()
	m, err := telemetry.NewMetrics(tel.MeterProvider())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	// One request per 100 s, a burst of 1: the second is refused.
	s := testServer(t, app.Config{Store: st}, Config{RateLimit: 0.01, Metrics: m})
	refused := func() map[string]int64 {
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		out := map[string]int64{}
		for _, sm := range rm.ScopeMetrics {
			for _, mt := range sm.Metrics {
				if mt.Name != telemetry.MetricRequestsRefused {
					continue
				}
				for _, dp := range mt.Data.(metricdata.Sum[int64]).DataPoints {
					rule, _ := dp.Attributes.Value("refusal.rule")
					out[rule.AsString()] += dp.Value
				}
			}
		}
		return out
	}
	for i, want := range []int{http.StatusOK, http.StatusTooManyRequests} {
		r := httptest.NewRequest("GET", "/fhir/metadata", nil)
		r.RemoteAddr = "192.0.2.1:4000"
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, r)
		if rec.Code != want {
			t.Fatalf("request %d = %d, want %d", i, rec.Code, want)
		}
		if got, wantN := refused()["rate-limited"], int64(i); got != wantN {
			t.Errorf("after request %d: %s{refusal.rule=rate-limited} = %d, want %d", i, telemetry.MetricRequestsRefused, got, wantN)
		}
	}
}
