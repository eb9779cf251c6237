package console

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/conformance"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/operator"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
)

// view is what every page template gets: the page's own data in Page.
type view struct {
	Title              string
	Person             string
	Dev, SignedIn      bool
	Auditor, Operator  bool
	CSRF, Flash, Route string
	// Outcome, a few words, starts the page's title after an action:
	// the flash's title, or the handler's (request.outcome).
	Outcome string
	// SessionLimit tells a signed-in person when the session ends (not
	// in development mode, which has no sign-in).
	SessionLimit string
	Page         any
}

// parsePages parses the layout with each page template.
func (c *Console) parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"traceURL":    c.settings.traceLink,
		"when":        when,
		"pretty":      pretty,
		"outcomeWord": outcomeWord,
		"outcomeOf":   outcomeOf,
		"actionWord": func(code string) string {
			return map[string]string{"C": "create", "R": "read", "U": "update", "D": "delete", "E": "execute"}[code]
		},
		"ruleURL": func(rule string) string { return Prefix + "/rules#rule-" + rule },
		"inc":     func(i int) int { return i + 1 },
		"dec":     func(i int) int { return i - 1 },
		"join":    strings.Join,
		"list":    func(v ...string) []string { return v },
		"trimAE":  func(ref string) string { return strings.TrimPrefix(ref, "AuditEvent/") },
		"seconds": func(s float64) string { return time.Duration(s * float64(time.Second)).Round(time.Second).String() },
		"lastAttempt": func(h []operator.AttemptView) *operator.AttemptView {
			if len(h) == 0 {
				return nil
			}
			return &h[len(h)-1]
		},
		"times": func(n int) string {
			if n == 1 {
				return "once"
			}
			return fmt.Sprintf("%d times", n)
		},
		"counted":     auditlog.Counted,
		"resourceURL": resourceURL,
		"localCS":     localCodeSystem,
		"published":   conformanceURL,
	}
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFiles, "templates/layout.html")
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(templateFiles, "templates/*.html")
	if err != nil {
		return nil, err
	}
	out := map[string]*template.Template{}
	for _, n := range names {
		name := strings.TrimSuffix(path.Base(n), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(templateFiles, n)
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", n, err)
		}
		out[name] = t
	}
	return out, nil
}

// execute renders rq's page into w.
func (c *Console) execute(w io.Writer, rq *request) error {
	t := c.pages[rq.page]
	if t == nil {
		return fmt.Errorf("no console page %q", rq.page)
	}
	v := view{Title: rq.title, Dev: c.Development(), Route: rq.r.Pattern, Page: rq.data}
	if rq.sess != nil {
		p := rq.sess.principal
		f := rq.sess.takeFlash()
		v.SignedIn, v.CSRF, v.Flash, v.Outcome = true, rq.sess.csrf, f.Message, f.Title
		v.Person = strings.TrimPrefix(p.ClientID, auth.PersonPrefix)
		if v.Person == "" {
			v.Person = "development mode"
		}
		v.Auditor, v.Operator = p.Scopes.Has(auth.ScopeAuditor), p.Scopes.Has(auth.ScopeOperator)
		if !v.Dev {
			v.SessionLimit = c.sessions.limit(rq.sess)
		}
	}
	if rq.outcome != "" {
		v.Outcome = rq.outcome
	}
	return t.ExecuteTemplate(w, "layout", v)
}

// when formats a time (time.Time or an instant string) for people, in UTC.
func when(v any) string {
	switch t := v.(type) {
	case *time.Time:
		if t == nil {
			return ""
		}
		return when(*t)
	case time.Time:
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05.000 UTC")
	case string:
		if p, err := time.Parse(time.RFC3339Nano, t); err == nil {
			return when(p)
		}
		return t
	}
	return ""
}

// pretty indents JSON for reading ("" for nothing). JSON nested deeper
// than maxViewDepth, or whose indented form would exceed maxViewBytes, is
// shown as it is (unindented): indentation grows with the depth, and an
// EHR's 16 KB answer nested 8,000 deep became a 128 MB page.
func pretty(v any) string {
	var raw []byte
	switch x := v.(type) {
	case json.RawMessage:
		raw = x
	case []byte:
		raw = x
	case string:
		raw = []byte(x)
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return ""
		}
		raw = b
	}
	if out, ok := indent(raw, maxViewBytes); ok {
		return string(out)
	}
	return string(raw)
}

// indent indents valid JSON by two spaces a level, as json.Indent does,
// stopping (false) beyond maxViewDepth levels or max bytes of output, or
// for what is not JSON.
func indent(raw []byte, max int) ([]byte, bool) {
	if !json.Valid(raw) {
		return nil, false
	}
	out := make([]byte, 0, min(len(raw)*2, max))
	newline := func(depth int) {
		out = append(out, '\n')
		for range depth {
			out = append(out, ' ', ' ')
		}
	}
	// Trailing space is kept, leading space dropped, as json.Indent does.
	trail := len(strings.TrimRight(string(raw), " \t\r\n"))
	depth, inString, escaped := 0, false, false
	for i := 0; i < trail; i++ {
		ch := raw[i]
		if inString {
			out = append(out, ch)
			switch {
			case escaped:
				escaped = false
			case ch == '\\':
				escaped = true
			case ch == '"':
				inString = false
			}
			continue
		}
		switch ch {
		case ' ', '\t', '\n', '\r':
			continue
		case '"':
			inString = true
			out = append(out, ch)
		case '{', '[':
			out = append(out, ch)
			j := i + 1
			for j < len(raw) && (raw[j] == ' ' || raw[j] == '\t' || raw[j] == '\n' || raw[j] == '\r') {
				j++
			}
			if j < len(raw) && (raw[j] == '}' || raw[j] == ']') { // empty: {} or []
				out = append(out, raw[j])
				i = j
				break
			}
			depth++
			if depth > maxViewDepth {
				return nil, false
			}
			newline(depth)
		case '}', ']':
			depth--
			newline(depth)
			out = append(out, ch)
		case ',':
			out = append(out, ch)
			newline(depth)
		case ':':
			out = append(out, ':', ' ')
		default:
			out = append(out, ch)
		}
		if len(out) > max {
			return nil, false
		}
	}
	return append(out, raw[trail:]...), true
}

// localCodeSystem links a CodeSystem the gateway publishes to its section
// of the rules page ("" for any other system).
func localCodeSystem(url string) string {
	for _, cs := range conformance.CodeSystems() {
		if cs.Url != nil && *cs.Url == url && cs.Id != nil {
			return Prefix + "/rules#cs-" + *cs.Id
		}
	}
	return ""
}

// home is the console's start page: what each role can do.
func (c *Console) home(rq *request) error {
	return rq.render("home", "Console", nil)
}

// concept is one code of a CodeSystem the gateway publishes.
type concept struct{ Code, Display, Definition string }

// codeSystemView is a CodeSystem for reading.
type codeSystemView struct {
	ID, URL, Title, Description string
	Concepts                    []concept
}

// rules shows the gateway's own CodeSystems: the rule catalogue
// (validation-rule) and its local codes. They are part of the binary, so
// nothing of the store is read and the page is not audited.
func (c *Console) rules(rq *request) error {
	var out []codeSystemView
	for _, cs := range conformance.CodeSystems() {
		v := codeSystemView{}
		if cs.Id != nil {
			v.ID = *cs.Id
		}
		if cs.Url != nil {
			v.URL = *cs.Url
		}
		if cs.Title != nil {
			v.Title = *cs.Title
		}
		if cs.Description != nil {
			v.Description = *cs.Description
		}
		for _, k := range cs.Concept {
			cc := concept{Code: k.Code}
			if k.Display != nil {
				cc.Display = *k.Display
			}
			if k.Definition != nil {
				cc.Definition = *k.Definition
			}
			v.Concepts = append(v.Concepts, cc)
		}
		out = append(out, v)
	}
	return rq.render("rules", "Rules and codes", out)
}

// notFound answers a console path that names no page.
func (c *Console) notFound(rq *request) error {
	return outcome.New(outcome.NotFound, "not-found", "console-page-unknown", "there is no such page in the console")
}

// outcomeWord names an AuditEvent.outcome code, as the search form offers it.
func outcomeWord(code string) string {
	return map[string]string{"0": "success", "4": "refused (client)", "8": "failed (server)"}[code]
}

// outcomeOf names the outcome of an AuditEvent of interaction, whose
// description (outcomeDesc) starts with the HTTP status. A delivery-send's
// status is the EHR's answer to the gateway: "failed (server)" would read
// as the gateway's fault and "refused (client)" as the clinic's, so its
// words name the EHR (probe p39 F8); 502 is also what an attempt without
// an answer (unreachable, a timeout) is recorded with.
func outcomeOf(interaction, code, description string) string {
	var status int
	if interaction != "delivery-send" || code == "0" {
		return outcomeWord(code)
	}
	if _, err := fmt.Sscanf(description, "HTTP %d", &status); err != nil {
		return outcomeWord(code)
	}
	switch {
	case status == 502: // Bad Gateway
		return "no answer from the EHR (or it answered 502)"
	case code == "8":
		return fmt.Sprintf("the EHR answered %d (its fault)", status)
	}
	return fmt.Sprintf("the EHR refused it (%d)", status)
}
