package ingest_test

import (
	"encoding/json"
	"io/fs"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
	"github.com/ketamine-gateway/ketamine-gateway/schemas"
)

var benchSession = "examples/session/routine-ketamine-iv-session.json"

// benchSessionDoc reads the benchmarks' session document.
func benchSessionDoc(b *testing.B) []byte {
	b.Helper()
	doc, err := fs.ReadFile(schemas.Examples(), benchSession)
	if err != nil {
		b.Fatal(err)
	}
	return doc
}

// benchPipeline is the benchmarks' session document and a pipeline with
// the default options.
func benchPipeline(b *testing.B) ([]byte, *ingest.Pipeline) {
	b.Helper()
	p, err := ingest.NewPipeline(mapping.Options{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	return benchSessionDoc(b), p
}

// benchTransaction runs doc, a session document, through p as ingest
// does and returns its transaction Bundle.
func benchTransaction(b *testing.B, p *ingest.Pipeline, doc []byte) []byte {
	b.Helper()
	if err := p.ValidateRecord(mapping.KindSession, doc); err != nil {
		b.Fatal(err)
	}
	res, err := mapValid(mapping.KindSession, doc)
	if err != nil {
		b.Fatal(err)
	}
	raws, err := p.Marshal(res)
	if err != nil {
		b.Fatal(err)
	}
	out, err := ingest.Transaction(res, raws)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// BenchmarkNativePipeline measures the whole in-process native path for
// one session document, as ingest runs it: strict JSON scan, schema
// validation, clinical rules, mapping, rendering every resource once and
// validating it against the R4 definitions, and the transaction Bundle
// built from those bytes.
func BenchmarkNativePipeline(b *testing.B) {
	doc, p := benchPipeline(b)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		benchTransaction(b, p, doc)
	}
}

// BenchmarkNativeBaseline is the same document through a bare
// encoding/json decode and encode: the floor the pipeline is compared with.
func BenchmarkNativeBaseline(b *testing.B) {
	doc := benchSessionDoc(b)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		var v any
		if err := json.Unmarshal(doc, &v); err != nil {
			b.Fatal(err)
		}
		if _, err := json.Marshal(v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNativeOutputBaseline is the transaction Bundle the pipeline
// renders for the same document (about 39 times its size) through a bare
// encoding/json decode and encode: the floor for producing that output.
func BenchmarkNativeOutputBaseline(b *testing.B) {
	doc, p := benchPipeline(b)
	out := benchTransaction(b, p, doc)
	b.SetBytes(int64(len(doc)))
	b.ReportMetric(float64(len(out)), "output-bytes")
	b.ReportAllocs()
	for b.Loop() {
		var v any
		if err := json.Unmarshal(out, &v); err != nil {
			b.Fatal(err)
		}
		if _, err := json.Marshal(v); err != nil {
			b.Fatal(err)
		}
	}
}
