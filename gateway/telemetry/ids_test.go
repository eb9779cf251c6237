package telemetry

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// msOf is the unix milliseconds in a trace id's first 6 bytes.
func msOf(tid trace.TraceID) int64 {
	var b [8]byte
	copy(b[2:], tid[:6])
	return int64(binary.BigEndian.Uint64(b[:]))
}

// TestTimeOrderedIDs: a trace id starts with its time in unix
// milliseconds, so ids made later sort after ids made earlier whatever
// their random parts; no two ids are the same (ids made in the same
// millisecond differ in their random part); trace and span ids are valid.
func TestTimeOrderedIDs(t *testing.T) {
	at := time.Date(2026, 12, 3, 9, 30, 0, 0, time.UTC)
	clock := at
	g := timeOrderedIDs{now: func() time.Time { return clock }}
	ctx := context.Background()
	seen := map[trace.TraceID]bool{}
	spans := map[trace.SpanID]bool{}
	newSpan := func(i int, s trace.SpanID) {
		if !s.IsValid() || spans[s] {
			t.Fatalf("id %d: span id %s invalid or made twice", i, s)
		}
		spans[s] = true
	}
	var prev trace.TraceID
	for i := range 2000 {
		clock = at.Add(time.Duration(i/4) * time.Millisecond) // four ids a millisecond
		tid, sid := g.NewIDs(ctx)
		if !tid.IsValid() {
			t.Fatalf("id %d: trace id %s, want a valid id", i, tid)
		}
		if got, want := msOf(tid), clock.UnixMilli(); got != want {
			t.Fatalf("id %d: time part %d, want %d", i, got, want)
		}
		if seen[tid] {
			t.Fatalf("id %d: trace id %s made twice", i, tid)
		}
		seen[tid] = true
		if i%4 == 0 && i > 0 && bytes.Compare(tid[:], prev[:]) <= 0 {
			t.Errorf("id %d (%s), of a later millisecond, sorts before %s", i, tid, prev)
		}
		prev = tid
		newSpan(i, sid)
		newSpan(i, g.NewSpanID(ctx, tid))
	}
	// The random part is random: over 2,000 ids, each of its bytes takes
	// many values (a constant or counter would not).
	for pos := 6; pos < 16; pos++ {
		vals := map[byte]bool{}
		for tid := range seen {
			vals[tid[pos]] = true
		}
		if len(vals) < 100 {
			t.Errorf("byte %d of the trace ids took %d values over 2,000 ids, want it random", pos, len(vals))
		}
	}
}

// TestSetupTraceIDsAreTimeOrdered: the tracer provider Setup installs
// starts traces with time-ordered ids.
func TestSetupTraceIDsAreTimeOrdered(t *testing.T) {
	tel := setup(t, nil)
	defer quickShutdown(t, tel)
	before := time.Now().UnixMilli()
	_, span := tel.TracerProvider().Tracer("test").Start(context.Background(), "request")
	span.End()
	after := time.Now().UnixMilli()
	tid := span.SpanContext().TraceID()
	if ms := msOf(tid); ms < before || ms > after {
		t.Errorf("trace id %s carries %d, want the time it was made (%d..%d)", tid, ms, before, after)
	}
}
