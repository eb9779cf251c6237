package fhirwire

import (
	"encoding/json"
	"testing"
)

// TestChangesSameAndReplay: two rewritings of one document are the Same
// when they replace the same strings by the same values at the same
// places, whatever the order; a Replay of one puts its values in the
// document as a Rewrite does (and Restore takes them out), and refuses,
// changing nothing, a document that no longer holds what it replaced.
func TestChangesSameAndReplay(t *testing.T) {
	const doc = `{"resourceType": "Observation", "status": "final", "code": {"text": "x"},
		"subject": {"reference": "urn:uuid:p"}, "performer": [{"reference": "urn:uuid:q"}],
		"focus": [{"reference": "urn:uuid:p"}]}`
	decode := func() map[string]any {
		var m map[string]any
		if err := json.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	ids := map[string]string{"urn:uuid:p": "Patient/1", "urn:uuid:q": "Practitioner/2"}
	other := map[string]string{"urn:uuid:p": "Patient/9", "urn:uuid:q": "Practitioner/2"}
	rewrite := func(m map[string]any, ids map[string]string) *Changes {
		t.Helper()
		var ch Changes
		if err := (Rewriter{IDs: ids, Changes: &ch}).Rewrite(m); err != nil {
			t.Fatal(err)
		}
		return ch.Clone()
	}
	m := decode()
	a := rewrite(m, ids)
	want, _ := json.Marshal(m)
	if len(a.list) != 3 {
		t.Fatalf("%d changes, want 3", len(a.list))
	}
	// The same rewriting again, after Restore: the Same; another's not.
	restore := func(c *Changes) { c.Clone().Restore() }
	restore(a)
	if b := rewrite(m, ids); !a.Same(b) || !b.Same(a) {
		t.Error("the same rewriting twice is not the Same")
	}
	restore(a)
	if b := rewrite(m, other); a.Same(b) {
		t.Error("a rewriting to other identities is the Same")
	}
	restore(a)
	if b := rewrite(decode(), ids); a.Same(b) {
		t.Error("the rewriting of another document (an equal one) is the Same")
	}
	// The order does not matter; one change fewer does.
	rev := a.Clone()
	for i, j := 0, len(rev.list)-1; i < j; i, j = i+1, j-1 {
		rev.list[i], rev.list[j] = rev.list[j], rev.list[i]
	}
	if !a.Same(rev) {
		t.Error("the same changes in another order are not the Same")
	}
	if fewer := (&Changes{list: a.list[1:]}); a.Same(fewer) || fewer.Same(a) {
		t.Error("changes and their part are the Same")
	}

	// Replay: the document as the Rewrite left it, recorded to Restore.
	var into Changes
	if !a.Replay(&into) {
		t.Fatal("Replay refused the document it was recorded on")
	}
	if got, _ := json.Marshal(m); string(got) != string(want) {
		t.Errorf("replayed: %s\nwant %s", got, want)
	}
	if !into.Same(a) {
		t.Error("Replay did not record what it replaced")
	}
	into.Restore()
	if got, _ := json.Marshal(m); string(got) != string(decodeCompact(t, doc)) {
		t.Errorf("restored: %s", got)
	}
	// A document changed since: Replay refuses, and changes nothing.
	m["subject"].(map[string]any)["reference"] = "urn:uuid:z"
	before, _ := json.Marshal(m)
	var none Changes
	if a.Replay(&none) || len(none.list) != 0 {
		t.Error("Replay took a document that no longer holds what it replaced")
	}
	if after, _ := json.Marshal(m); string(after) != string(before) {
		t.Errorf("a refused Replay changed the document: %s", after)
	}
}

// decodeCompact is doc as encoding/json writes it back.
func decodeCompact(t *testing.T, doc string) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(doc), &m); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(m)
	return b
}
