package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
)

// TestGranularHiddenIDs: a write through granular scopes to the id of a
// resource they hide (the PHQ-9, or a deleted survey item) answers exactly
// as the same write to an id nobody holds, and writes nothing, with
// update-as-create on (one tenant) and off (several): a conditional create
// whose _id names it (REST and a Bundle entry's ifNoneExist), a PUT, a
// conditional update by _id, a PATCH, a DELETE (also with If-Match) and
// $validate of an update or a delete. Before, the hidden id answered 412
// conditional-id-taken where an unused one was created (201) or 404; a PUT
// to an unused id created it (201) where the hidden one was 404; a PUT to
// the deleted survey took over its id and history (201, W/"3").
//
// The same holds for a client that reads through granular scopes only but
// writes unrestricted (system/Observation.rs?category=... with
// system/Observation.cud): before, its PUT to the hidden PHQ-9 overwrote it
// (200) where an unused id was 404, its DELETE deleted it, and $validate
// called both valid.
func TestGranularHiddenIDs(t *testing.T) {
	for _, scopes := range []struct{ name, cond, writer string }{
		{"restricted writes",
			"system/Observation.cruds?category=" + catSystem + "|vital-signs system/Patient.rs",
			"system/Observation.cud?category=" + catSystem + "|vital-signs " + hospitalScope},
		{"restricted reads, unrestricted writes",
			vitalScope + " system/Observation.cud system/Patient.rs",
			vitalScope + " system/Observation.ud system/Patient.rs"},
	} {
		for _, updateCreate := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/UpdateCreate=%t", scopes.name, updateCreate), func(t *testing.T) {
				testHiddenIDs(t, updateCreate, scopes.cond, scopes.writer)
			})
		}
	}
}

func testHiddenIDs(t *testing.T, updateCreate bool, cond, writer string) {
	c := newChartConfig(t, app.Config{UpdateCreate: updateCreate})
	ctx := context.Background()
	e := c.a.Engine
	// A deleted PHQ-9 item: its versions 1 (survey) and 2 (deleted).
	b, _ := json.Marshal(observation("survey", "44255-8", "Patient/"+c.patient))
	item, err := e.Create(ctx, clinic("create"), "Observation", func() ([]byte, error) { return b, nil }, engine.Preconditions{})
	if err != nil {
		t.Fatal(err)
	}
	deleted := item.Resource.ID
	if _, err := e.Delete(ctx, clinic("delete"), "Observation", deleted, engine.Preconditions{}); err != nil {
		t.Fatal(err)
	}
	vital := func(id string) []byte {
		doc := observation("vital-signs", "8867-4", "Patient/"+c.patient)
		if id != "" {
			doc["id"] = id
		}
		b, _ := json.Marshal(doc)
		return b
	}
	body := func(b []byte) engine.Body { return func() ([]byte, error) { return b, nil } }
	bundle := func(sc string, entry map[string]any) error {
		b, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": []any{entry}})
		_, err := e.Bundle(ctx, hospital("transaction", sc), b, engine.Answer{Base: "https://gw/fhir"})
		return err
	}
	patch, _ := json.Marshal([]any{map[string]any{"op": "replace", "path": "/status", "value": "amended"}})
	validate := func(sc, id, mode string, b []byte) error {
		valid, issues, err := e.Validate(ctx, hospital("validate", sc), engine.ValidateRequest{Type: "Observation", ID: id,
			Query: url.Values{"mode": {mode}}, Body: func() ([]byte, error) { return b, nil }})
		if err != nil || valid {
			return err
		}
		for _, i := range issues {
			if i.Severity == "error" {
				return outcome.New(outcome.Invalid, i.Code, i.Rule, "")
			}
		}
		return nil
	}
	writes := []struct {
		name string
		do   func(id string) error
	}{
		{"conditional create by _id", func(id string) error {
			_, err := e.Create(ctx, hospital("create", cond), "Observation", body(vital("")), engine.Preconditions{IfNoneExist: "_id=" + id})
			return err
		}},
		{"Bundle entry's ifNoneExist _id", func(id string) error {
			var doc map[string]any
			_ = json.Unmarshal(vital(""), &doc)
			return bundle(cond, map[string]any{"resource": doc,
				"request": map[string]any{"method": "POST", "url": "Observation", "ifNoneExist": "_id=" + id}})
		}},
		{"PUT", func(id string) error {
			_, err := e.Update(ctx, hospital("update", writer), "Observation", id, body(vital(id)), engine.Preconditions{})
			return err
		}},
		{"PUT entry", func(id string) error {
			var doc map[string]any
			_ = json.Unmarshal(vital(id), &doc)
			return bundle(writer, map[string]any{"resource": doc, "request": map[string]any{"method": "PUT", "url": "Observation/" + id}})
		}},
		{"conditional update by _id", func(id string) error {
			_, err := e.ConditionalUpdate(ctx, hospital("update", cond), "Observation", "_id="+id, body(vital("")), engine.Preconditions{})
			return err
		}},
		{"PATCH", func(id string) error {
			_, err := e.Patch(ctx, hospital("patch", cond), "Observation", id, engine.PatchJSON, body(patch), engine.Preconditions{})
			return err
		}},
		{"conditional PATCH by _id", func(id string) error {
			_, err := e.ConditionalPatch(ctx, hospital("patch", cond), "Observation", "_id="+id, engine.PatchJSON, body(patch), engine.Preconditions{})
			return err
		}},
		{"DELETE", func(id string) error {
			_, err := e.Delete(ctx, hospital("delete", writer), "Observation", id, engine.Preconditions{})
			return err
		}},
		{"DELETE If-Match 2", func(id string) error {
			_, err := e.Delete(ctx, hospital("delete", writer), "Observation", id, engine.Preconditions{IfMatch: `W/"2"`})
			return err
		}},
		{"$validate mode=update", func(id string) error { return validate(writer, id, "update", vital(id)) }},
		{"$validate mode=delete", func(id string) error { return validate(writer, id, "delete", nil) }},
	}
	answer := func(err error) string {
		if err == nil {
			return "done"
		}
		k, issues := outcome.From(err)
		if len(issues) == 0 {
			return err.Error()
		}
		return fmt.Sprintf("%d %s", k.HTTPStatus(), issues[0].Rule)
	}
	history := func(id string) string {
		h, err := e.History(ctx, clinic("history-instance"), "Observation", id, url.Values{}, false)
		if err != nil {
			return answer(err)
		}
		var vs []string
		for _, v := range h.Versions {
			vs = append(vs, fmt.Sprintf("%d:%t", v.Version, v.Deleted))
		}
		return strings.Join(vs, ",")
	}
	for i, w := range writes {
		t.Run(w.name, func(t *testing.T) {
			unused := fmt.Sprintf("unused-%d", i)
			want := answer(w.do(unused))
			for _, hidden := range []struct{ name, id string }{{"PHQ-9", c.phq9}, {"deleted item", deleted}} {
				before := history(hidden.id)
				if got := answer(w.do(hidden.id)); got != want {
					t.Errorf("%s of the %s = %s, of an unused id %s: want the same", w.name, hidden.name, got, want)
				}
				if after := history(hidden.id); after != before {
					t.Errorf("%s of the %s: its history %s -> %s, want it unchanged", w.name, hidden.name, before, after)
				}
			}
			if !strings.HasPrefix(want, "404") && !strings.HasPrefix(want, "412") && want != "done" && !strings.HasPrefix(w.name, "$validate") {
				t.Errorf("%s of an unused id = %s, want a 404, 412 or done", w.name, want)
			}
			if w.name == "$validate mode=update" && want != "400 id-unavailable" {
				t.Errorf("%s of an unused id = %s, want id-unavailable, as the PUT answers", w.name, want)
			}
			if _, err := e.Read(ctx, clinic("read"), "Observation", unused); err == nil {
				t.Errorf("%s created %s: a client whose granular scopes hide resources may not choose ids", w.name, unused)
			}
		})
	}
}
