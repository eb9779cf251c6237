package console

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// The difference between the mappings of two versions of a record: both
// are mapped (the newer one, by default, as an update, as the gateway maps
// a record it already holds), their resources paired by type and
// identifier, and each pair compared line by line.

// diffLine is one line of a difference: ' ' same, '-' only in the older,
// '+' only in the newer.
type diffLine struct {
	Op   string
	Text string
}

// resourceDiff is the difference of one resource.
type resourceDiff struct {
	Key    string
	Change string // changed | added | removed | same
	Lines  []diffLine
}

// diffData is the difference page's data.
type diffData struct {
	Kinds          []string
	Kind           string
	Old, New       string
	AsUpdate       bool
	Tried          bool
	OldIssues      []issueView
	NewIssues      []issueView
	Resources      []resourceDiff
	Changed, Total int
}

// diffForm shows the two-record form.
func (c *Console) diffForm(rq *request) error {
	return rq.render("diff", "Compare mappings", diffData{Kinds: kinds(), Kind: "session", AsUpdate: true})
}

// diffMap maps both records and compares their resources.
func (c *Console) diffMap(rq *request) error {
	d := diffData{Kinds: kinds(), Kind: rq.r.PostFormValue("kind"), Tried: true, AsUpdate: rq.r.PostFormValue("update") == "on"}
	oldDoc, err := readRecord(rq, "old")
	if err != nil {
		return err
	}
	newDoc, err := readRecord(rq, "new")
	if err != nil {
		return err
	}
	d.Old, d.New = string(oldDoc), string(newDoc)
	oldV, errOld := c.dryRun(rq, mapping.Kind(d.Kind), oldDoc, false)
	newV, errNew := c.dryRun(rq, mapping.Kind(d.Kind), newDoc, d.AsUpdate)
	var rules []string
	for _, e := range []struct {
		err error
		out *[]issueView
	}{{errOld, &d.OldIssues}, {errNew, &d.NewIssues}} {
		if e.err == nil {
			continue
		}
		kind, issues := outcome.From(e.err)
		if kind.HTTPStatus() >= 500 {
			return e.err
		}
		rq.status = kind.HTTPStatus()
		rules = append(rules, outcome.Rules(e.err)...)
		for i, is := range issues {
			*e.out = append(*e.out, issueView{N: i + 1, Severity: "error", Rule: is.Rule, Message: is.Message, Pointer: is.Pointer})
		}
	}
	if len(rules) > 0 {
		rq.sc.Rules = rules
		return rq.render("diff", "Compare mappings", d)
	}
	d.Resources = diffBundles(oldV.Bundle, newV.Bundle)
	d.Total = len(d.Resources)
	for _, r := range d.Resources {
		if r.Change != "same" {
			d.Changed++
		}
	}
	rq.sc.Description = fmt.Sprintf("console mapping comparison: %s records, %d of %d resources differ", d.Kind, d.Changed, d.Total)
	return rq.render("diff", "Compare mappings", d)
}

// bundleResources returns a transaction Bundle's resources by pairing key.
func bundleResources(b []byte) (map[string]json.RawMessage, []string) {
	var bundle struct {
		Entry []struct {
			FullURL  string          `json:"fullUrl"`
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	_ = json.Unmarshal(b, &bundle) // the gateway rendered it
	out := map[string]json.RawMessage{}
	var order []string
	for _, e := range bundle.Entry {
		var r struct {
			ResourceType string
			Identifier   []struct{ System, Value string }
		}
		_ = json.Unmarshal(e.Resource, &r)
		key := r.ResourceType + " " + e.FullURL
		if len(r.Identifier) > 0 {
			key = r.ResourceType + " " + r.Identifier[0].System + "|" + r.Identifier[0].Value
		}
		if _, dup := out[key]; !dup {
			order = append(order, key)
		}
		out[key] = e.Resource
	}
	return out, order
}

// diffBundles pairs two Bundles' resources and compares each pair.
func diffBundles(oldB, newB []byte) []resourceDiff {
	olds, oldOrder := bundleResources(oldB)
	news, newOrder := bundleResources(newB)
	keys := append([]string(nil), oldOrder...)
	for _, k := range newOrder {
		if _, ok := olds[k]; !ok {
			keys = append(keys, k)
		}
	}
	var out []resourceDiff
	for _, k := range keys {
		o, n := lines(olds[k]), lines(news[k])
		d := resourceDiff{Key: k, Lines: diffLines(o, n)}
		switch {
		case olds[k] == nil:
			d.Change = "added"
		case news[k] == nil:
			d.Change = "removed"
		case strings.Join(o, "\n") == strings.Join(n, "\n"):
			d.Change, d.Lines = "same", nil
		default:
			d.Change = "changed"
		}
		out = append(out, d)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Change != "same" && out[j].Change == "same" })
	return out
}

// lines pretty-prints a resource into lines (nil for none).
func lines(raw json.RawMessage) []string {
	if raw == nil {
		return nil
	}
	return strings.Split(pretty(raw), "\n")
}

// maxDiffCells bounds the comparison table; beyond it a pair is shown as
// removed and added in full.
const maxDiffCells = 4 << 20

// diffLines is a longest-common-subsequence line difference, after the
// common head and tail are set aside.
func diffLines(a, b []string) []diffLine {
	head := 0
	for head < len(a) && head < len(b) && a[head] == b[head] {
		head++
	}
	tail := 0
	for tail < len(a)-head && tail < len(b)-head && a[len(a)-1-tail] == b[len(b)-1-tail] {
		tail++
	}
	var out []diffLine
	for _, l := range a[:head] {
		out = append(out, diffLine{" ", l})
	}
	ma, mb := a[head:len(a)-tail], b[head:len(b)-tail]
	if len(ma)*len(mb) > maxDiffCells {
		for _, l := range ma {
			out = append(out, diffLine{"-", l})
		}
		for _, l := range mb {
			out = append(out, diffLine{"+", l})
		}
	} else {
		// lcs[i][j] is the LCS length of ma[i:] and mb[j:].
		lcs := make([][]int32, len(ma)+1)
		for i := range lcs {
			lcs[i] = make([]int32, len(mb)+1)
		}
		for i := len(ma) - 1; i >= 0; i-- {
			for j := len(mb) - 1; j >= 0; j-- {
				if ma[i] == mb[j] {
					lcs[i][j] = lcs[i+1][j+1] + 1
				} else {
					lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
				}
			}
		}
		i, j := 0, 0
		for i < len(ma) || j < len(mb) {
			switch {
			case i < len(ma) && j < len(mb) && ma[i] == mb[j]:
				out = append(out, diffLine{" ", ma[i]})
				i, j = i+1, j+1
			case j < len(mb) && (i == len(ma) || lcs[i][j+1] >= lcs[i+1][j]):
				out = append(out, diffLine{"+", mb[j]})
				j++
			default:
				out = append(out, diffLine{"-", ma[i]})
				i++
			}
		}
	}
	for _, l := range a[len(a)-tail:] {
		out = append(out, diffLine{" ", l})
	}
	return out
}
