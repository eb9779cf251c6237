package replay

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// Change ops of a PathChange.
const (
	OpAdded   = "added"
	OpRemoved = "removed"
	OpChanged = "changed"
)

// PathChange is one difference between a stored resource and what the
// mapping makes of its record now, at an element path
// ("Observation.code.coding[0].display"). Old and New are the values, only
// when the caller asked for them (they are PHI).
type PathChange struct {
	Path string `json:"path"`
	Op   string `json:"op"`
	Old  any    `json:"old,omitempty"`
	New  any    `json:"new,omitempty"`
}

// diff compares two decoded resources of type typ, element by element:
// objects by member, arrays by position. The server's own elements (id,
// meta.versionId, meta.lastUpdated) are not compared, nor the difference
// between an Observation's statuses final, amended and corrected (the
// status a new version of the record, or a correction, gives it).
func diff(typ string, stored, mapped map[string]any, values bool) []PathChange {
	a, b := normalize(typ, stored), normalize(typ, mapped)
	var out []PathChange
	walk(typ, a, b, values, &out)
	return out
}

// normalize returns a shallow copy of doc without what the comparison
// leaves out.
func normalize(typ string, doc map[string]any) map[string]any {
	out := make(map[string]any, len(doc))
	for k, v := range doc {
		out[k] = v
	}
	delete(out, "id")
	if meta, ok := out["meta"].(map[string]any); ok {
		m := make(map[string]any, len(meta))
		for k, v := range meta {
			if k != "versionId" && k != "lastUpdated" {
				m[k] = v
			}
		}
		if len(m) == 0 {
			delete(out, "meta")
		} else {
			out["meta"] = m
		}
	}
	if typ == "Observation" {
		switch out["status"] {
		case "amended", "corrected":
			out["status"] = "final"
		}
	}
	return out
}

// walk appends the differences between a and b at path.
func walk(path string, a, b any, values bool, out *[]PathChange) {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok {
			break
		}
		keys := make([]string, 0, len(x)+len(y))
		for k := range x {
			keys = append(keys, k)
		}
		for k := range y {
			if _, ok := x[k]; !ok {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			av, aok := x[k]
			bv, bok := y[k]
			p := path + "." + k
			switch {
			case !bok:
				*out = append(*out, change(p, OpRemoved, av, nil, values))
			case !aok:
				*out = append(*out, change(p, OpAdded, nil, bv, values))
			default:
				walk(p, av, bv, values, out)
			}
		}
		return
	case []any:
		y, ok := b.([]any)
		if !ok {
			break
		}
		for i := range max(len(x), len(y)) {
			p := path + "[" + strconv.Itoa(i) + "]"
			switch {
			case i >= len(y):
				*out = append(*out, change(p, OpRemoved, x[i], nil, values))
			case i >= len(x):
				*out = append(*out, change(p, OpAdded, nil, y[i], values))
			default:
				walk(p, x[i], y[i], values, out)
			}
		}
		return
	}
	if !reflect.DeepEqual(a, b) {
		*out = append(*out, change(path, OpChanged, a, b, values))
	}
}

func change(path, op string, old, new any, values bool) PathChange {
	c := PathChange{Path: path, Op: op}
	if values {
		c.Old, c.New = old, new
	}
	return c
}

// groupKey is the summary group of a change: its path without positions
// and its op ("Observation.code.coding.display changed").
func groupKey(c PathChange) string {
	var b strings.Builder
	depth := 0
	for _, r := range c.Path {
		switch {
		case r == '[':
			depth++
		case r == ']':
			depth--
		case depth == 0:
			b.WriteRune(r)
		}
	}
	return fmt.Sprintf("%s %s", b.String(), c.Op)
}
