package delivery

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// fastEHR answers every write at once, without storing: transaction and
// batch responses with one 201 per entry, 201 for single requests.
func fastEHR(b *testing.B) *httptest.Server {
	var seq atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		path := strings.Trim(strings.TrimPrefix(r.URL.Path, "/fhir"), "/")
		w.Header().Set("Content-Type", "application/fhir+json")
		if path != "" {
			typ, _, _ := strings.Cut(path, "/")
			w.Header().Set("Location", fmt.Sprintf("%s/%d/_history/1", typ, seq.Add(1)))
			w.WriteHeader(http.StatusCreated)
			return
		}
		var in struct {
			Type  string
			Entry []struct{ Request struct{ URL string } }
		}
		if json.Unmarshal(body, &in) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var sb strings.Builder
		fmt.Fprintf(&sb, `{"resourceType":"Bundle","type":"%s-response","entry":[`, in.Type)
		for i, e := range in.Entry {
			if i > 0 {
				sb.WriteByte(',')
			}
			typ, _, _ := strings.Cut(e.Request.URL, "?")
			typ, _, _ = strings.Cut(typ, "/")
			fmt.Fprintf(&sb, `{"response":{"status":"201 Created","location":"%s/%d/_history/1"}}`, typ, seq.Add(1))
		}
		sb.WriteString("]}")
		io.WriteString(w, sb.String())
	}))
	b.Cleanup(srv.Close)
	return srv
}

type doneCounter struct {
	n, target atomic.Int64
	done      chan struct{}
}

func (c *doneCounter) OnAttempt(_, outcome string, _ time.Duration) {
	if outcome != OutcomeDone {
		panic("benchmark attempt " + outcome)
	}
	if c.n.Add(1) == c.target.Load() {
		close(c.done)
	}
}

func (c *doneCounter) OnBacklog(store.DestinationStats) {}

// BenchmarkDeliver measures delivery throughput (records/s) from a
// in-memory outbox to a local EHR stub that answers at once: what the engine
// itself costs (claiming, HTTP, response checks, recording).
func BenchmarkDeliver(b *testing.B) {
	golden, err := os.ReadFile("../../mapping/testdata/session/iv-routine.golden.json")
	if err != nil {
		b.Fatal(err)
	}
	small := sessionBundle("P-1", "S-1", "completed", false)
	for _, bc := range []struct {
		name        string
		mode        Mode
		payload     []byte
		concurrency int
	}{
		{"transaction/3-entries/c1", ModeTransaction, small, 1},
		{"transaction/3-entries/c8", ModeTransaction, small, 8},
		{"transaction/golden-26-entries/c8", ModeTransaction, golden, 8},
		{"batch/golden-26-entries/c8", ModeBatch, golden, 8},
		{"single/3-entries/c8", ModeSingle, small, 8},
	} {
		b.Run(bc.name, func(b *testing.B) {
			srv := fastEHR(b)
			outbox := newMemoryOutbox()
			now := time.Now()
			for i := range b.N {
				outbox.Enqueue(&store.OutboxItem{Destination: "ehr", OrderKey: fmt.Sprint(i % 1000), Payload: bc.payload, NextAttempt: now, Created: now})
			}
			obs := &doneCounter{done: make(chan struct{})}
			obs.target.Store(int64(b.N))
			d := Destination{Name: "ehr", BaseURL: srv.URL + "/fhir", Mode: bc.mode, Concurrency: bc.concurrency}
			w, err := NewWorker(outbox, []Destination{d}, WorkerOptions{Observer: obs, CapabilityInterval: -1})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.payload)))
			b.ResetTimer()
			start := time.Now()
			go w.Run(ctx)
			<-obs.done
			el := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/el.Seconds(), "records/s")
		})
	}
}
