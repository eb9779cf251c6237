package telemetry

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// timeOrderedIDs makes the ids of the traces the gateway starts (those of
// requests without a traceparent header). A trace id's first 6 bytes are
// the current time in unix milliseconds, big-endian, and its other 10 are
// random (80 bits), as store.NewID's resource ids and UUIDv7: trace ids
// made later sort after ids made earlier. The trace id is also the
// request's id, which every AuditEvent holds and indexes twice (its
// trace-id and its request-id entity), on every audited request: ordered
// ids put those index entries at the end of their index ranges, a few
// pages for a whole indexing transaction, instead of on a random page each
// (issue 19: 17% fewer bytes written to the WAL per audited read). The
// rightmost 7 bytes stay random, as W3C Trace Context's random flag
// requires. Span ids are 8 random bytes.
//
// The random bytes come from math/rand/v2 (the runtime's ChaCha8
// generator, seeded by the system), as the SDK's own generator uses
// math/rand: a trace id is no secret (every response carries it in
// traceresponse), and a read of crypto/rand per id cost more than the
// rest of starting a span. Resource ids (store.NewID) use crypto/rand.
type timeOrderedIDs struct {
	now func() time.Time // time.Now when nil
}

var _ sdktrace.IDGenerator = timeOrderedIDs{}

// NewIDs implements sdktrace.IDGenerator.
func (g timeOrderedIDs) NewIDs(context.Context) (trace.TraceID, trace.SpanID) {
	now := time.Now
	if g.now != nil {
		now = g.now
	}
	var tid trace.TraceID
	ms := uint64(now().UnixMilli())
	for i := 5; i >= 0; i-- {
		tid[i] = byte(ms)
		ms >>= 8
	}
	binary.BigEndian.PutUint16(tid[6:8], uint16(rand.Uint32()))
	binary.BigEndian.PutUint64(tid[8:], rand.Uint64())
	return tid, newSpanID()
}

// NewSpanID implements sdktrace.IDGenerator.
func (timeOrderedIDs) NewSpanID(context.Context, trace.TraceID) trace.SpanID {
	return newSpanID()
}

// newSpanID is 8 random bytes, not all zero (a valid span id).
func newSpanID() trace.SpanID {
	var sid trace.SpanID
	for !sid.IsValid() {
		binary.BigEndian.PutUint64(sid[:], rand.Uint64())
	}
	return sid
}
