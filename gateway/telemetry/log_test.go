package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"
)

func TestLogHandlerAddsTraceID(t *testing.T) {
	tel, _, _ := NewForTest()
	shutdown(t, tel)
	var buf bytes.Buffer
	log := slog.New(LogHandler(slog.NewJSONHandler(&buf, nil))).With("component", "test")

	ctx, span := tel.TracerProvider().Tracer("t").Start(context.Background(), "x")
	log.InfoContext(ctx, "with span")
	span.End()
	log.InfoContext(context.Background(), "without span")
	log.Info("no context")

	dec := json.NewDecoder(&buf)
	var recs []map[string]any
	for dec.More() {
		var r map[string]any
		if err := dec.Decode(&r); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	if len(recs) != 3 {
		t.Fatalf("records = %v", recs)
	}
	if recs[0][LogKeyTraceID] != span.SpanContext().TraceID().String() ||
		recs[0][LogKeySpanID] != span.SpanContext().SpanID().String() || recs[0]["component"] != "test" {
		t.Errorf("record with span = %v", recs[0])
	}
	for _, r := range recs[1:] {
		if _, ok := r[LogKeyTraceID]; ok {
			t.Errorf("trace_id without span: %v", r)
		}
	}
}

// TestLogHandlerKeepsCallersTraceID: a record that already names a trace
// id (the delivery worker logs the record's) gets no second trace_id key.
func TestLogHandlerKeepsCallersTraceID(t *testing.T) {
	tel, _, _ := NewForTest()
	shutdown(t, tel)
	var buf bytes.Buffer
	log := slog.New(LogHandler(slog.NewJSONHandler(&buf, nil)))
	ctx, span := tel.TracerProvider().Tracer("t").Start(context.Background(), "x")
	log.InfoContext(ctx, "attempt", LogKeyTraceID, "4bf92f3577b34da6a3ce929d0e0e4736")
	span.End()
	if n := bytes.Count(buf.Bytes(), []byte(`"`+LogKeyTraceID+`"`)); n != 1 {
		t.Errorf("%d trace_id keys in %s, want 1", n, buf.Bytes())
	}
}
