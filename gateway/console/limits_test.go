package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/schemas"
)

// nested is a JSON array nested n levels deep around inner.
func nested(n int, inner string) string {
	return strings.Repeat("[", n) + inner + strings.Repeat("]", n)
}

// postRecord uploads a record to the playground as a file.
func (f *fixture) postRecord(t *testing.T, kind, record string) (int, string) {
	t.Helper()
	_, form, _ := f.get(t, "/console/playground")
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("csrf", csrf(t, form))
	_ = mw.WriteField("kind", kind)
	fw, _ := mw.CreateFormFile("recordFile", "record.json")
	_, _ = fw.Write([]byte(record))
	_ = mw.Close()
	resp, err := f.cl.Post(f.srv.URL+"/console/playground", mw.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// TestPlaygroundDeepRecord: a record nested thousands of levels deep is
// refused for its depth and not shown highlighted: the page stays small
// (it used to grow with the square of the depth: 6 KB of brackets made a
// 27 MB page, probe p14 F6), and says why the record is not shown.
func TestPlaygroundDeepRecord(t *testing.T) {
	f := newFixture(t, nil)
	for _, tc := range []struct {
		name, record string
	}{
		{"deep array", nested(2000, "")},
		{"deep under a property", `{"sessionId":` + nested(2000, `1`) + `}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, page := f.postRecord(t, "session", tc.record)
			if status != http.StatusBadRequest {
				t.Errorf("status = %d, want 400", status)
			}
			if len(page) > 64<<10+2*len(tc.record) {
				t.Errorf("page of %d bytes for a record of %d, want it linear in the record", len(page), len(tc.record))
			}
			if !strings.Contains(page, "nested more than 100 levels deep or too large to show highlighted") {
				t.Errorf("the page does not say why the record is not shown:\n%.3000s", page)
			}
		})
	}
}

// TestRenderJSONBounded: the highlighted view stops at maxViewDepth levels
// and at its byte bound (an element's id is its whole JSON pointer, so a
// long key with many members under it would grow the page with their
// product), and shows every document within them.
func TestRenderJSONBounded(t *testing.T) {
	longKey := strings.Repeat("k", 10000)
	many := strings.TrimSuffix(strings.Repeat("1,", 5000), ",")
	for _, tc := range []struct {
		name, doc string
		max       int
		limited   bool
	}{
		{"100 levels", nested(maxViewDepth, "1"), maxViewBytes, false},
		{"101 levels", nested(maxViewDepth+1, "1"), maxViewBytes, true},
		{"10,000 levels", nested(10000, ""), maxViewBytes, true},
		{"long key, many members", `{"` + longKey + `":[` + many + `]}`, 1 << 20, true},
		{"within the bound", `{"a":[` + many + `]}`, 1 << 20, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := renderJSONMax([]byte(tc.doc), nil, tc.max)
			if got := errors.Is(err, errViewLimit); got != tc.limited {
				t.Fatalf("renderJSONMax(%.40q) = %v, want limited %v", tc.doc, err, tc.limited)
			}
			if !tc.limited && (err != nil || !strings.Contains(string(out), `<span class="n">1</span>`)) {
				t.Errorf("renderJSONMax(%.40q) = %.200q, %v, want the document", tc.doc, out, err)
			}
		})
	}
}

// TestPrettyBounded: pretty indents as json.Indent does (every shipped
// example), and shows JSON nested deeper than maxViewDepth, or whose
// indented form exceeds maxViewBytes, unindented instead.
func TestPrettyBounded(t *testing.T) {
	_ = fs.WalkDir(schemas.Examples(), "examples", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".json") {
			return err
		}
		raw, _ := fs.ReadFile(schemas.Examples(), p)
		var want bytes.Buffer
		_ = json.Indent(&want, raw, "", "  ")
		if got := pretty(raw); got != want.String() {
			t.Errorf("pretty(%s) differs from json.Indent", p)
		}
		return nil
	})
	for _, tc := range []struct {
		name, doc string
		indented  bool
	}{
		{"empty containers", `{"a":[],"b":{},"c":[ ],"d":"x\"]["}`, true},
		{"100 levels", nested(maxViewDepth, "1"), true},
		{"101 levels", nested(maxViewDepth+1, "1"), false},
		{"8,000 levels", `{"resourceType":"OperationOutcome","issue":[{"extension":` + nested(8000, "") + `}]}`, false},
		{"wide at depth 99", nested(99, "["+strings.TrimSuffix(strings.Repeat("1,", 30000), ",")+"]"), false},
		{"not JSON", `{"a":`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := pretty(tc.doc)
			if !tc.indented {
				if got != tc.doc {
					t.Errorf("pretty(%.40q) = %.80q (%d bytes), want it as it is", tc.doc, got, len(got))
				}
				return
			}
			var want bytes.Buffer
			_ = json.Indent(&want, []byte(tc.doc), "", "  ")
			if got != want.String() {
				t.Errorf("pretty(%.40q) = %.200q, want %.200q", tc.doc, got, want.String())
			}
		})
	}
}

// TestDeliveryDeepAnswer: an EHR's answer nested 8,000 deep, shown in
// full, is shown as received (unindented), not as a page of indentation
// growing with the square of its depth (a 16 KB answer made a 128 MB
// page, probe p14 F7).
func TestDeliveryDeepAnswer(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	it := &store.OutboxItem{Destination: "ehr", OrderKey: "k", Patient: "s|p", Kind: "session", Source: "s", RecordID: "r",
		Version: "1", Payload: []byte(`{}`)}
	if err := f.app.Store.Write(ctx, func(tx store.Tx) error { return tx.Enqueue(it) }); err != nil {
		t.Fatal(err)
	}
	if got, err := f.app.Store.Claim(ctx, "ehr", time.Now().Add(time.Second), time.Minute, 1); err != nil || len(got) != 1 {
		t.Fatalf("Claim = %v %v", got, err)
	}
	answer := `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"x","extension":` +
		nested(8000, "") + `}]}`
	if err := f.app.Store.Complete(ctx, &store.Attempt{ItemID: it.ID, At: time.Now(), HTTPStatus: 422, Outcome: []byte(answer)}, store.StatusDead, time.Time{}); err != nil {
		t.Fatal(err)
	}
	ids, err := f.app.Operator.IDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	status, page, _ := f.get(t, "/console/deliveries/"+ids.Encode(it.ID)+"?answers=full")
	if status != http.StatusOK || !strings.Contains(page, "The EHR's answer as received") {
		t.Fatalf("status = %d, want 200 with the answer:\n%.2000s", status, page)
	}
	if len(page) > 64<<10+4*len(answer) {
		t.Errorf("page of %d bytes for an answer of %d, want it linear in the answer", len(page), len(answer))
	}
}
