package console

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/url"
	"regexp"
	"slices"
	"strconv"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// A stored resource for auditors: its current version, its history (who
// wrote each version, in which request, and what became of its
// deliveries) and the line difference of two versions. Everything is read
// through the engine, as GET /fhir/{type}/{id}/_history is (the person's
// scopes and tenant decide what is shown; the page's AuditEvent names
// every version read), and the writers from the audit trail.

// maxVersionsShown bounds the versions the page lists (newest first).
const maxVersionsShown = 100

// errNoResource answers an id nobody holds and one of another tenant or
// that the person's scopes do not let them read, in the same words.
var errNoResource = outcome.New(outcome.NotFound, "not-found", "resource-unknown",
	"no such resource: none you may read has this type and id (open resources from a source record or a request)")

// resourceData is the resource page's data.
type resourceData struct {
	Type, ID string
	// Current is the newest version (a deletion, when the resource is
	// deleted); Shown is the newest version with content, whose JSON
	// Document (or Raw, for a document the viewer does not show) is.
	Current, Shown *auditlog.VersionView
	Document       template.HTML
	Raw            string
	Versions       []auditlog.VersionView
	Total          int // versions stored (more than Versions: the older are not listed)
	// From and To are the compare form's versions (as asked, or the
	// two newest); DiffError says why a comparison asked for was not
	// made.
	From, To  string
	DiffError string
	Diff      *versionDiff
}

// versionDiff is the difference of two versions of the resource.
type versionDiff struct {
	Old, New *auditlog.VersionView
	// Meta are the differences of the version's bookkeeping
	// (meta.versionId, meta.lastUpdated), which differ between any two
	// versions: said once, not repeated among the lines.
	Meta  []metaChange
	Lines []diffLine
	Same  bool // the content is the same
}

// metaChange is one element of meta that differs between two versions.
type metaChange struct{ Element, Old, New string }

// resourcePage shows one resource with its history, and with ?diff=a..b
// (or from and to) the difference of versions a and b.
func (c *Console) resourcePage(rq *request) error {
	typ, id := rq.r.PathValue("type"), rq.r.PathValue("id")
	if t, i, ok := c.app.Engine.Target(typ, id); ok {
		rq.sc.Target = audit.Entity{Type: t, ID: i} // a failed read names it, as the API's does
	}
	hist, err := c.app.Engine.History(rq.ctx(), rq.sc, typ, id, url.Values{"_count": {strconv.Itoa(maxVersionsShown)}}, false)
	if kind, _ := outcome.From(err); err != nil && kind == outcome.NotFound {
		return errNoResource
	}
	if err != nil {
		return err
	}
	if len(hist.Versions) == 0 { // not one disclosed: as unknown
		return errNoResource
	}
	l, err := auditlog.BuildLineage(rq.ctx(), c.app.Store, auditlog.LineageQuery{Resource: typ + "/" + id,
		IdentifierBase: c.app.IdentifierBase, Tenant: rq.sc.TenantOf(), ReceiptsOnly: true})
	if kind, _ := outcome.From(err); err != nil && kind != outcome.NotFound {
		return err
	}
	versions, err := auditlog.Versions(rq.ctx(), c.app.Store, rq.sc.TenantOf(), l, hist.Versions)
	if err != nil {
		return err
	}
	if l != nil {
		l.Audit(rq.sc) // the receipts and the requests that wrote them, shown
	}
	d := resourceData{Type: typ, ID: id, Versions: versions, Total: hist.Total, Current: &versions[0]}
	for i, v := range hist.Versions {
		if !v.Deleted {
			d.Shown = &versions[i]
			d.Document, d.Raw = viewJSON(v.Body)
			break
		}
	}
	d.From, d.To = defaultPair(versions)
	if a, b, asked, msg := diffVersions(rq.r.URL.Query()); msg != "" {
		d.DiffError = msg
		d.From, d.To = rq.r.URL.Query().Get("from"), rq.r.URL.Query().Get("to")
	} else if asked {
		d.From, d.To = strconv.FormatInt(a, 10), strconv.FormatInt(b, 10)
		d.Diff, d.DiffError, err = c.compare(rq, typ, id, a, b, hist.Versions, versions)
		if err != nil {
			return err
		}
	}
	rq.sc.Description = fmt.Sprintf("console resource page: %d of %s", len(versions), auditlog.Counted(hist.Total, "version"))
	if d.Diff != nil {
		rq.sc.Description += fmt.Sprintf(", versions %d and %d compared", d.Diff.Old.Version, d.Diff.New.Version)
	}
	if d.DiffError != "" {
		// The page is shown, with the comparison refused at its form.
		rq.status = 400
		rq.sc.Rules = []string{"console-form-invalid"}
	}
	return rq.render("resource", typ+"/"+id, d)
}

// viewJSON renders a stored body with the JSON viewer, or as indented
// text when the viewer does not show it (beyond its bounds).
func viewJSON(body []byte) (template.HTML, string) {
	if doc, _, err := renderJSON(body, nil); err == nil {
		return doc, ""
	}
	return "", pretty(body)
}

// defaultPair is what the compare form offers first: the previous and the
// newest version ("" when there is one version).
func defaultPair(vs []auditlog.VersionView) (string, string) {
	if len(vs) < 2 {
		return "", ""
	}
	return strconv.FormatInt(vs[1].Version, 10), strconv.FormatInt(vs[0].Version, 10)
}

// diffPattern is ?diff=a..b.
var diffPattern = regexp.MustCompile(`^([0-9]{1,18})\.\.([0-9]{1,18})$`)

// diffVersions reads the versions to compare, older first: ?diff=a..b,
// or the form's from and to. asked is false when none is asked; msg names
// what is wrong with a malformed request (never its value).
func diffVersions(q url.Values) (a, b int64, asked bool, msg string) {
	const want = "Compare: two different versions of this resource, such as diff=1..2"
	var as, bs string
	switch {
	case q.Has("diff"):
		m := diffPattern.FindStringSubmatch(q.Get("diff"))
		if m == nil || len(q["diff"]) > 1 || q.Has("from") || q.Has("to") {
			return 0, 0, true, want
		}
		as, bs = m[1], m[2]
	case q.Has("from") || q.Has("to"):
		as, bs = q.Get("from"), q.Get("to")
		if as == "" || bs == "" {
			return 0, 0, true, "Compare: choose two versions"
		}
	default:
		return 0, 0, false, ""
	}
	x, errA := strconv.ParseInt(as, 10, 64)
	y, errB := strconv.ParseInt(bs, 10, 64)
	if errA != nil || errB != nil || x < 1 || y < 1 || x == y {
		return 0, 0, true, want
	}
	return min(x, y), max(x, y), true, ""
}

// compare compares versions a and b (a older): those the page's history
// read (listed), else read through the engine; msg says why they cannot
// be (a version the resource does not have).
func (c *Console) compare(rq *request, typ, id string, a, b int64, listed []*store.Resource, vs []auditlog.VersionView) (*versionDiff, string, error) {
	var sides [2]*store.Resource
	for i, v := range []int64{a, b} {
		if j := slices.IndexFunc(listed, func(r *store.Resource) bool { return r.Version == v }); j >= 0 {
			sides[i] = listed[j]
			continue
		}
		r, err := c.app.Engine.VRead(rq.ctx(), rq.sc, typ, id, strconv.FormatInt(v, 10))
		kind, _ := outcome.From(err)
		switch {
		case err != nil && kind == outcome.Gone && r != nil: // a deletion: no content
		case err != nil && kind == outcome.NotFound:
			return nil, fmt.Sprintf("Compare: this resource has no version %d", v), nil
		case err != nil:
			return nil, "", err
		}
		sides[i] = r
	}
	d := &versionDiff{Old: viewOf(sides[0], vs), New: viewOf(sides[1], vs)}
	oldLines, oldMeta, err := contentLines(sides[0])
	if err != nil {
		return nil, "", err
	}
	newLines, newMeta, err := contentLines(sides[1])
	if err != nil {
		return nil, "", err
	}
	for _, k := range []string{"versionId", "lastUpdated"} {
		if oldMeta[k] != newMeta[k] {
			d.Meta = append(d.Meta, metaChange{Element: "meta." + k, Old: oldMeta[k], New: newMeta[k]})
		}
	}
	d.Lines = diffLines(oldLines, newLines)
	d.Same = slices.Equal(oldLines, newLines)
	return d, "", nil
}

// viewOf is the listed view of version r, or one made from r for a version
// older than those listed.
func viewOf(r *store.Resource, vs []auditlog.VersionView) *auditlog.VersionView {
	for i := range vs {
		if vs[i].Version == r.Version {
			return &vs[i]
		}
	}
	return &auditlog.VersionView{Version: r.Version, Deleted: r.Deleted, Method: r.Method, LastUpdated: fhirwire.Instant(r.LastUpdated)}
}

// contentLines is a version's JSON, indented, without meta.versionId and
// meta.lastUpdated (returned apart: every two versions differ in them),
// in lines (none for a deletion, whose version and time are returned).
// Keys are in alphabetical order, the same in both versions compared;
// numbers and text are as stored (a decimal keeps its precision).
func contentLines(r *store.Resource) ([]string, map[string]string, error) {
	meta := map[string]string{}
	if r.Deleted || r.Body == nil {
		meta["versionId"] = strconv.FormatInt(r.Version, 10)
		meta["lastUpdated"] = fhirwire.Instant(r.LastUpdated)
		return nil, meta, nil
	}
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, nil, fmt.Errorf("stored %s/%s version %d: %w", r.Type, r.ID, r.Version, err)
	}
	if m, ok := doc["meta"].(map[string]any); ok {
		for _, k := range []string{"versionId", "lastUpdated"} {
			if v, ok := m[k].(string); ok {
				meta[k] = v
				delete(m, k)
			}
		}
		if len(m) == 0 {
			delete(doc, "meta")
		}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // the page escapes; the text is shown as stored
	if err := enc.Encode(doc); err != nil {
		return nil, nil, errors.New("a stored version could not be shown")
	}
	return lines(bytes.TrimSpace(b.Bytes())), meta, nil
}

// resourceRef is a reference the console links to the resource page:
// Type/id, optionally with /_history/n.
var resourceRef = regexp.MustCompile(`^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/([0-9]+))?$`)

// resourceURL is the resource page of a reference ("" for what is not a
// reference to a resource); a versioned one links to that version's row
// of the history.
func resourceURL(ref string) string {
	m := resourceRef.FindStringSubmatch(ref)
	if m == nil {
		return ""
	}
	u := Prefix + "/resources/" + m[1] + "/" + m[2]
	if m[3] != "" {
		u += "#v" + m[3]
	}
	return u
}
