package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
	"github.com/ketamine-gateway/ketamine-gateway/schemas"
)

// maxRecord bounds a record pasted or uploaded into the playground.
const maxRecord = 2 << 20

// example is a shipped example record.
type example struct{ Kind, Name, Path string }

// issueView is one issue of a mapping, anchored in the input.
type issueView struct {
	N                                int
	Severity, Rule, Message, Pointer string
	Expression, Anchor               string
	// Href links to the highlighted member (a fragment of this page).
	Href template.URL
}

// playgroundData is the playground's data.
type playgroundData struct {
	Kinds    []string
	Examples []example
	Kind     string
	Input    string
	Tried    bool
	OK       bool
	Issues   []issueView
	// Warnings are the mapped record's warnings (a record stored would
	// be answered with them).
	Warnings []issueView
	Document template.HTML // the input with the issues highlighted
	NotJSON  bool
	// TooLarge: the record is nested deeper or would render larger than
	// the console shows (maxViewDepth, maxViewBytes); it is not shown
	// highlighted, and the issues name their places by JSON pointer.
	TooLarge bool
	Bundle   string
	Entries  int
	Profiles []string
	Systems  []string
}

// kinds lists the native record kinds.
func kinds() []string {
	var out []string
	for _, k := range mapping.Kinds() {
		out = append(out, string(k))
	}
	return out
}

// examples lists the shipped example records.
func examples() []example {
	var out []example
	_ = fs.WalkDir(schemas.Examples(), "examples", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".json") {
			out = append(out, example{Kind: path.Base(path.Dir(p)), Name: strings.TrimSuffix(path.Base(p), ".json"), Path: p})
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// playground shows the form, with a shipped example loaded when asked.
func (c *Console) playground(rq *request) error {
	d := playgroundData{Kinds: kinds(), Examples: examples(), Kind: "session"}
	if ex := rq.r.URL.Query().Get("example"); ex != "" {
		for _, e := range d.Examples {
			if e.Path == ex {
				b, err := fs.ReadFile(schemas.Examples(), e.Path)
				if err != nil {
					return err
				}
				d.Kind, d.Input = e.Kind, string(b)
			}
		}
	}
	return rq.render("playground", "Mapping playground", d)
}

// readRecord reads the record of a playground form: the uploaded file
// when there is one, else the text area.
func readRecord(rq *request, field string) ([]byte, error) {
	if f, _, err := rq.r.FormFile(field + "File"); err == nil {
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, maxRecord+1))
		if err != nil || len(b) > maxRecord {
			return nil, outcome.New(outcome.TooLarge, "too-costly", "body-too-large", "the record is larger than 2 MiB")
		}
		if len(b) > 0 {
			return b, nil
		}
	}
	return []byte(rq.r.PostFormValue(field)), nil
}

// playgroundMap maps the record without storing it, as POST
// /ingest/{kind}?dryRun=true does (ingest.Service.DryRun, with the
// signed-in person's tenant's options), and shows the Bundle and its
// warnings, or the issues.
func (c *Console) playgroundMap(rq *request) error {
	d := playgroundData{Kinds: kinds(), Examples: examples(), Kind: rq.r.PostFormValue("kind"), Tried: true}
	doc, err := readRecord(rq, "record")
	if err != nil {
		return err
	}
	d.Input = string(doc)
	v, err := c.dryRun(rq, mapping.Kind(d.Kind), doc, false)
	if err != nil {
		kind, issues := outcome.From(err)
		// A mapping's defect is the gateway's (500), but its issues name
		// the rule and the entry: shown, as a dry run answers them.
		if kind.HTTPStatus() >= 500 && !slices.Contains(outcome.Rules(err), ingest.RuleMappingNonconformant) {
			return err
		}
		rq.status, rq.sc.Rules = kind.HTTPStatus(), outcome.Rules(err)
		d.anchorIssues(doc, issues)
		return rq.render("playground", "Mapping playground", d)
	}
	n := len(v.Result.Entries)
	d.OK, d.Bundle, d.Entries = true, pretty(v.Bundle), n
	for i, w := range v.Warnings {
		d.Warnings = append(d.Warnings, issueView{N: i + 1, Severity: w.Severity, Rule: w.Rule, Message: w.Message,
			Pointer: w.Pointer, Expression: w.Expression})
	}
	var err2 error
	d.Document, _, err2 = renderJSON(doc, nil)
	d.TooLarge = errors.Is(err2, errViewLimit)
	d.Profiles, d.Systems = canonicals(v.Bundle)
	rq.sc.Description = fmt.Sprintf("console dry run: %s record: %d entries", d.Kind, n)
	return rq.render("playground", "Mapping playground", d)
}

// dryRun validates and maps a record (update: as a newer version) as
// ingest does, without storing it, with the options of the signed-in
// person's tenant.
func (c *Console) dryRun(rq *request, kind mapping.Kind, doc []byte, update bool) (*ingest.Verdict, error) {
	return c.app.Ingest.DryRun(rq.ctx(), rq.sc.TenantOf(), kind, doc, update)
}

// anchorIssues numbers the issues and highlights each at its place in the
// input (or notes that the input is not JSON).
func (d *playgroundData) anchorIssues(doc []byte, issues []outcome.Issue) {
	_, has, err := renderJSON(doc, nil)
	d.TooLarge = errors.Is(err, errViewLimit)
	marks := map[string][]int{}
	for i, is := range issues {
		v := issueView{N: i + 1, Severity: is.Severity, Rule: is.Rule, Message: is.Message, Pointer: is.Pointer, Expression: is.Expression}
		if v.Severity == "" {
			v.Severity = "error"
		}
		if err == nil {
			v.Anchor = pointerID(anchor(is.Pointer, has))
			v.Href = template.URL("#" + v.Anchor) // pointerID escaped what a fragment cannot hold
			marks[anchor(is.Pointer, has)] = append(marks[anchor(is.Pointer, has)], v.N)
		}
		d.Issues = append(d.Issues, v)
	}
	if err != nil {
		d.NotJSON = !d.TooLarge
		return
	}
	d.Document, _, _ = renderJSON(doc, marks)
}

// canonicals lists the profiles and code systems a Bundle's resources use.
func canonicals(bundle []byte) (profiles, systems []string) {
	var walk func(v any, key string)
	ps, ss := map[string]bool{}, map[string]bool{}
	walk = func(v any, key string) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				walk(c, k)
			}
		case []any:
			for _, c := range x {
				walk(c, key)
			}
		case string:
			switch key {
			case "profile":
				ps[x] = true
			case "system":
				if strings.HasPrefix(x, "http") {
					ss[x] = true
				}
			}
		}
	}
	var doc any
	if json.Unmarshal(bundle, &doc) != nil {
		return nil, nil
	}
	walk(doc, "")
	for p := range ps {
		profiles = append(profiles, p)
	}
	for s := range ss {
		systems = append(systems, s)
	}
	sort.Strings(profiles)
	sort.Strings(systems)
	return profiles, systems
}

// limitBody bounds a console form's body (records, file uploads).
func limitBody(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 2*maxRecord+64<<10)
}
