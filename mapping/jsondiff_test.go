package mapping_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// maxDiffs bounds the differences jsonDiff lists.
const maxDiffs = 20

// jsonDiff lists, for people, the elements where the JSON documents want
// and got differ: each with its path (Bundle.entry[2].resource.valueQuantity.code)
// and both values, at most maxDiffs (then how many more). The golden
// inputs are made up, so their values may be shown.
func jsonDiff(want, got []byte) string {
	var w, g any
	if err := json.Unmarshal(want, &w); err != nil {
		return "the golden file is not JSON: " + err.Error()
	}
	if err := json.Unmarshal(got, &g); err != nil {
		return "the output is not JSON: " + err.Error()
	}
	var diffs []string
	diffValues(rootName(w), w, g, &diffs)
	if len(diffs) == 0 {
		return "the same elements, written otherwise (formatting or member order)"
	}
	more := ""
	if len(diffs) > maxDiffs {
		more = fmt.Sprintf("\n  ... and %d more", len(diffs)-maxDiffs)
		diffs = diffs[:maxDiffs]
	}
	return "elements that differ (golden -> now):\n  " + strings.Join(diffs, "\n  ") + more
}

// rootName is a document's FHIRPath root: its resourceType.
func rootName(v any) string {
	if m, ok := v.(map[string]any); ok {
		if rt, ok := m["resourceType"].(string); ok {
			return rt
		}
	}
	return "$"
}

func diffValues(path string, want, got any, out *[]string) {
	if reflect.DeepEqual(want, got) {
		return
	}
	wm, wok := want.(map[string]any)
	gm, gok := got.(map[string]any)
	if wok && gok {
		keys := map[string]bool{}
		for k := range wm {
			keys[k] = true
		}
		for k := range gm {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		slices.Sort(sorted)
		for _, k := range sorted {
			wv, win := wm[k]
			gv, gin := gm[k]
			switch {
			case !win:
				*out = append(*out, fmt.Sprintf("%s.%s: added %s", path, k, short(gv)))
			case !gin:
				*out = append(*out, fmt.Sprintf("%s.%s: removed (was %s)", path, k, short(wv)))
			default:
				diffValues(path+"."+k, wv, gv, out)
			}
		}
		return
	}
	wa, wok := want.([]any)
	ga, gok := got.([]any)
	if wok && gok {
		for i := 0; i < max(len(wa), len(ga)); i++ {
			p := fmt.Sprintf("%s[%d]", path, i)
			switch {
			case i >= len(wa):
				*out = append(*out, fmt.Sprintf("%s: added %s", p, short(ga[i])))
			case i >= len(ga):
				*out = append(*out, fmt.Sprintf("%s: removed (was %s)", p, short(wa[i])))
			default:
				diffValues(p, wa[i], ga[i], out)
			}
		}
		return
	}
	*out = append(*out, fmt.Sprintf("%s: %s -> %s", path, short(want), short(got)))
}

// short renders a value in at most 80 characters.
func short(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 80 {
		return string(b[:77]) + "..."
	}
	return string(b)
}

// TestJSONDiff: a failing golden names the elements that differ (probe p42
// F6: it said only "differs from ...golden.json").
func TestJSONDiff(t *testing.T) {
	tests := []struct {
		name, want, got string
		has             []string
	}{
		{"a changed unit", `{"resourceType":"Bundle","entry":[{"resource":{"valueQuantity":{"code":"/min"}}}]}`,
			`{"resourceType":"Bundle","entry":[{"resource":{"valueQuantity":{"code":"{beats}/min"}}}]}`,
			[]string{`Bundle.entry[0].resource.valueQuantity.code: "/min" -> "{beats}/min"`}},
		{"added and removed", `{"resourceType":"Observation","a":1,"list":[1]}`, `{"resourceType":"Observation","b":2,"list":[1,2]}`,
			[]string{"Observation.a: removed (was 1)", "Observation.b: added 2", "Observation.list[1]: added 2"}},
		{"formatting only", `{"a": 1}`, `{"a":1}`, []string{"written otherwise"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := jsonDiff([]byte(tt.want), []byte(tt.got))
			for _, h := range tt.has {
				if !strings.Contains(got, h) {
					t.Errorf("jsonDiff = %s, want it to name %s", got, h)
				}
			}
		})
	}
}
