package audit

import (
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// Render is Event(r) as store.NewVersion makes version 1 of
// AuditEvent/r.ID at r.Recorded: the bytes fhirwire.Marshal writes of the
// document with its id and meta set (resourceType first, then every
// object's members in key order) and the index entries search.Extract
// extracts from it, in its order. Every request writes an AuditEvent, and
// building the document, marshalling it and extracting its entries took
// some 40 µs of an audited read's CPU; Render writes both directly, in a
// few. TestRenderMatchesEvent and FuzzRender hold it to Event.
func Render(r Record) (body []byte, entries []search.Entry) {
	k, typ, subtype := classify(r.Interaction)
	at := r.Recorded.UTC()
	instant := at.Format("2006-01-02T15:04:05.000Z")
	refs := make([]string, 0, len(r.Patients)+len(r.Entities))
	refs = append(refs, r.Patients...)
	for _, e := range r.Entities {
		refs = append(refs, e.reference())
	}

	b := make([]byte, 0, 1280)
	b = append(b, `{"resourceType":"AuditEvent","action":`...)
	action := r.action(k)
	b = fhirwire.AppendString(b, action)
	b = append(b, `,"agent":[{`...)
	if r.ClientAddr != "" {
		b = append(b, `"network":{"address":`...)
		b = fhirwire.AppendString(b, r.ClientAddr)
		b = append(b, `,"type":"2"},`...)
	}
	b = append(b, `"requestor":true,"type":{"coding":[`...)
	b = appendCoding(b, systemAgentType, "110153", "Source Role ID")
	b = append(b, `]},"who":`...)
	switch {
	case r.ClientID != "":
		b = append(b, `{"identifier":{"system":`...)
		b = fhirwire.AppendString(b, SystemClient)
		b = append(b, `,"value":`...)
		b = fhirwire.AppendString(b, r.ClientID)
		b = append(b, `}}`...)
	case r.Recipient != "" || r.ByGateway:
		b = append(b, `{"display":`...)
		b = fhirwire.AppendString(b, r.Observer)
		b = append(b, '}')
	default:
		b = append(b, `{"display":`...)
		b = fhirwire.AppendString(b, r.anonymous())
		b = append(b, '}')
	}
	b = append(b, `},{"requestor":false,"type":{"coding":[`...)
	b = appendCoding(b, systemAgentType, "110152", "Destination Role ID")
	b = append(b, `]},"who":{"display":`...)
	b = fhirwire.AppendString(b, r.destination())
	b = append(b, `}}]`...)
	idents := r.identified()
	if len(refs) > 0 || len(idents) > 0 {
		b = append(b, `,"entity":[`...)
		for i, ref := range refs {
			if i > 0 {
				b = append(b, ',')
			}
			if i < len(r.Patients) {
				b = append(b, `{"role":`...)
				b = appendCoding(b, systemObjectRole, "1", "Patient")
				b = append(b, `,"type":`...)
				b = appendCoding(b, systemEntityType, "1", "Person")
			} else {
				b = append(b, '{')
				if h := r.Entities[i-len(r.Patients)].SHA256; h != "" {
					b = append(b, `"detail":`...)
					b = appendDetails(b, [][2]string{{DetailJSONSHA256, h}})
					b = append(b, ',')
				}
				b = append(b, `"role":`...)
				b = appendCoding(b, systemObjectRole, "4", "Domain Resource")
				b = append(b, `,"type":`...)
				b = appendCoding(b, systemEntityType, "2", "System Object")
			}
			b = append(b, `,"what":{"reference":`...)
			b = fhirwire.AppendString(b, ref)
			b = append(b, `}}`...)
		}
		attempt := r.Attempt
		for i, id := range idents {
			if i > 0 || len(refs) > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"description":`...)
			b = fhirwire.AppendString(b, id.Description)
			if attempt != nil && id.System == SystemDelivery {
				b = append(b, `,"detail":`...)
				b = appendDetails(b, attempt.details())
				attempt = nil // on the first delivery named
			}
			b = append(b, `,"type":`...)
			b = appendCoding(b, systemEntityType, "2", "System Object")
			b = append(b, `,"what":{"identifier":{"system":`...)
			b = fhirwire.AppendString(b, id.System)
			b = append(b, `,"value":`...)
			b = fhirwire.AppendString(b, id.Value)
			b = append(b, `}}}`...)
		}
		b = append(b, ']')
	}
	if r.TraceID != "" {
		b = append(b, `,"extension":[{"url":`...)
		b = fhirwire.AppendString(b, ExtTraceID)
		b = append(b, `,"valueString":`...)
		b = fhirwire.AppendString(b, r.TraceID)
		b = append(b, `}]`...)
	}
	b = append(b, `,"id":`...)
	b = fhirwire.AppendString(b, r.ID)
	b = append(b, `,"meta":{"lastUpdated":`...)
	b = fhirwire.AppendString(b, instant)
	b = append(b, `,"versionId":"1"},"outcome":`...)
	b = fhirwire.AppendString(b, outcome(r.Status))
	b = append(b, `,"outcomeDesc":`...)
	b = fhirwire.AppendString(b, r.outcomeText())
	if !r.PeriodStart.IsZero() {
		b = append(b, `,"period":{`...)
		if !r.PeriodEnd.IsZero() {
			b = append(b, `"end":`...)
			b = fhirwire.AppendString(b, formatInstant(r.PeriodEnd))
			b = append(b, ',')
		}
		b = append(b, `"start":`...)
		b = fhirwire.AppendString(b, formatInstant(r.PeriodStart))
		b = append(b, '}')
	}
	b = append(b, `,"recorded":`...)
	b = fhirwire.AppendString(b, instant)
	b = append(b, `,"source":{"observer":{"display":`...)
	b = fhirwire.AppendString(b, r.Observer)
	b = append(b, '}')
	if r.Tenant != "" {
		b = append(b, `,"site":`...)
		b = fhirwire.AppendString(b, r.Tenant)
	}
	b = append(b, `,"type":[`...)
	b = appendCoding(b, systemSourceType, "4", "Application Server")
	b = append(b, `]},"subtype":[`...)
	b = appendCoding(b, subtype[0], subtype[1], subtype[2])
	b = append(b, `],"type":`...)
	b = appendCoding(b, typ[0], typ[1], typ[2])
	b = append(b, '}')

	// The entries, parameter by parameter in Extract's order, each kept
	// once per parameter as Extract keeps them.
	x := entryList{out: make([]search.Entry, 0, 14+2*len(refs))}
	ms := at.Truncate(time.Millisecond)
	x.param("_id").token("", r.ID, "")
	// An instant outside years 1-9999 is no FHIR instant: Extract drops it.
	dated := !ms.Before(search.MinTime()) && !ms.After(search.MaxTime())
	if dated {
		x.param("_lastUpdated").add(search.Entry{Type: search.TypeDate, Low: ms, High: ms})
	}
	x.param("action").token(search.CodeSystem("AuditEvent", "action", action), action, "")
	if r.ClientAddr != "" {
		x.param("address").add(search.StringEntry(r.ClientAddr))
	}
	if r.ClientID != "" {
		x.param("agent").token(SystemClient, r.ClientID, "")
	}
	if dated {
		x.param("date").add(search.Entry{Type: search.TypeDate, Low: ms, High: ms})
	}
	// entity: every literal reference; patient: those known to be of
	// Patients.
	var literal []search.Entry
	x.param("entity")
	for _, ref := range refs {
		if e, ok := search.ReferenceEntry(ref); ok {
			literal = append(literal, e)
			x.add(e)
		}
	}
	for _, id := range idents {
		x.token(id.System, id.Value, "")
	}
	oc := outcome(r.Status)
	x.param("outcome").token(search.CodeSystem("AuditEvent", "outcome", oc), oc, "")
	x.param("patient")
	for _, e := range literal {
		if e.RefType == "Patient" {
			x.add(e)
		}
	}
	x.param("site").token("", r.Tenant, "")
	x.param("subtype").token(subtype[0], subtype[1], search.Normalize(subtype[2]))
	x.param("trace-id").token("", r.TraceID, "")
	x.param("type").token(typ[0], typ[1], search.Normalize(typ[2]))
	return b, x.out
}

// appendDetails appends entity.detail elements of (type, valueString)
// pairs, their members in key order.
func appendDetails(b []byte, pairs [][2]string) []byte {
	b = append(b, '[')
	for i, p := range pairs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"type":`...)
		b = fhirwire.AppendString(b, p[0])
		b = append(b, `,"valueString":`...)
		b = fhirwire.AppendString(b, p[1])
		b = append(b, '}')
	}
	return append(b, ']')
}

// appendCoding appends a Coding's JSON, its members in key order.
func appendCoding(b []byte, system, code, display string) []byte {
	b = append(b, `{"code":`...)
	b = fhirwire.AppendString(b, code)
	b = append(b, `,"display":`...)
	b = fhirwire.AppendString(b, display)
	b = append(b, `,"system":`...)
	b = fhirwire.AppendString(b, system)
	return append(b, '}')
}

// entryList collects index entries parameter by parameter.
type entryList struct {
	out   []search.Entry
	name  string
	start int // where the current parameter's entries begin
	// set indexes the current parameter's entries once they are many (an
	// AuditEvent naming a thousand patients).
	set map[search.Entry]bool
}

// param starts the entries of parameter name.
func (x *entryList) param(name string) *entryList {
	x.name, x.start, x.set = name, len(x.out), nil
	return x
}

// add appends e to the current parameter's entries unless they have it.
func (x *entryList) add(e search.Entry) {
	e.Param = x.name
	switch cur := x.out[x.start:]; {
	case x.set != nil:
		if x.set[e] {
			return
		}
		x.set[e] = true
	case len(cur) >= 16:
		x.set = make(map[search.Entry]bool, 2*len(cur))
		for _, c := range cur {
			x.set[c] = true
		}
		if x.set[e] {
			return
		}
		x.set[e] = true
	default:
		for _, c := range cur {
			if c == e {
				return
			}
		}
	}
	x.out = append(x.out, e)
}

// token adds a token entry, unless system, code and text are all empty.
func (x *entryList) token(system, code, text string) {
	if system != "" || code != "" || text != "" {
		x.add(search.Entry{Type: search.TypeToken, System: system, Code: code, Text: text})
	}
}
