package auditlog

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/operator"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
	"github.com/ketamine-gateway/ketamine-gateway/schemas/r4"
)

// Lineage answers an auditor's question "what happened to this?" as one
// document, for a source record, a FHIR resource or a trace id: each
// receipt (time, client, trace id, content hash) -> the resource versions
// it produced -> every delivery with every attempt and the EHR's answer,
// plus the AuditEvents of the requests involved. It is built only from
// what the gateway stored (Provenance, AuditEvent, the outbox).

// LineageQuery selects what to follow; exactly one of a record (Source and
// RecordID, Kind optional), Resource ("Type/id") or TraceID.
type LineageQuery struct {
	Source   string `json:"source,omitempty"`
	Kind     string `json:"kind,omitempty"`
	RecordID string `json:"recordId,omitempty"`
	Resource string `json:"resource,omitempty"`
	TraceID  string `json:"traceId,omitempty"`
	// IdentifierBase is the deployment's identifier namespace (to name
	// records); mapping.DefaultIdentifierBase when empty.
	IdentifierBase string `json:"-"`
	// Tenant confines the answer to one tenant's records (search.AllTenants:
	// every tenant, the CLI's view).
	Tenant string `json:"-"`
	// ReceiptsOnly asks for the receipts and their requests alone: not
	// which of a receipt's resources were deleted or changed since, nor a
	// resource's accesses (the console's resource page, which shows each
	// version's writer).
	ReceiptsOnly bool `json:"-"`
}

// Lineage is the answer.
type Lineage struct {
	Query LineageQuery `json:"query"`
	// Receipts are the native record versions and Bundles that produced
	// the resources in question, oldest first.
	Receipts []Receipt `json:"receipts"`
	// Requests are the AuditEvents of the trace (trace queries) or of the
	// receipts' requests.
	Requests []RequestView `json:"requests"`
	// RequestsOmitted counts the requests that named the record and are
	// not in Requests (record queries): beyond the newest maxAccesses of
	// the record's own requests, or the newest maxLineageReads lineage
	// reads of it; RequestsSearch is then the AuditEvent search that lists
	// them all.
	RequestsOmitted int    `json:"requestsOmitted,omitempty"`
	RequestsSearch  string `json:"requestsSearch,omitempty"`
	// SharesFolded counts the tenants' shares of all-tenant requests left
	// out of Requests and Accesses because the request's whole record is
	// listed (FoldShares).
	SharesFolded int `json:"sharesFolded,omitempty"`
	// Accesses are the newest requests that touched the resource
	// (resource queries; at most maxAccesses).
	Accesses []RequestView `json:"accesses,omitempty"`

	// patients are those of the resource queried (resource queries);
	// records the record query's identifiers (system|value) a receipt or
	// a request named.
	patients []string
	records  []string
}

// Receipt is one native record version or Bundle the gateway received.
type Receipt struct {
	Provenance string `json:"provenance"`
	// Tenant is the tenant the receipt belongs to (omitted: the default
	// tenant); the CLI's view spans every tenant.
	Tenant         string   `json:"tenant,omitempty"`
	Received       string   `json:"received"`
	Activity       string   `json:"activity"`
	Source         string   `json:"source,omitempty"`
	Kind           string   `json:"kind,omitempty"`
	RecordID       string   `json:"recordId,omitempty"`
	Version        string   `json:"version,omitempty"`
	Content        string   `json:"content"`
	ContentHash    string   `json:"contentHash,omitempty"`
	MappingVersion string   `json:"mappingVersion,omitempty"`
	Reason         string   `json:"reason,omitempty"` // why it was written again: a replay's --reason, the Provenance's reason.text
	Client         string   `json:"client"`
	TraceID        string   `json:"traceId,omitempty"`
	Resources      []string `json:"resources"`
	// Deleted are the resources among Resources whose current version is
	// a deletion (a client's DELETE, a record withdrawn): the deletion's
	// version and time.
	Deleted []DeletedView `json:"deleted,omitempty"`
	// Changed are the resources among Resources whose current version is
	// a later one no native record produced: a client's write through the
	// FHIR API (PUT, PATCH, a Bundle), stored and not delivered
	// (docs/operations.md), so the EHR holds the receipt's version.
	Changed    []ChangedView   `json:"changedSince,omitempty"`
	Request    *RequestView    `json:"request,omitempty"`
	Deliveries []operator.View `json:"deliveries"`

	// recordSystem is the identifier system the Provenance names the
	// source record by (with RecordID, the record an audit names).
	recordSystem string
}

// DeletedView is a resource a receipt produced that is deleted since.
type DeletedView struct {
	Resource string `json:"resource"` // Type/id
	Version  string `json:"version"`  // the deletion, Type/id/_history/n
	At       string `json:"at"`       // when it was deleted
}

// ChangedView is a resource a receipt produced that a client changed
// since through the FHIR API: its current version, not delivered.
type ChangedView struct {
	Resource string `json:"resource"`         // Type/id
	Version  string `json:"version"`          // the current version, Type/id/_history/n
	At       string `json:"at"`               // when it was written
	Method   string `json:"method,omitempty"` // PUT, PATCH or POST (a Bundle entry's), as the store recorded it
	Client   string `json:"client,omitempty"` // who wrote it, as the request's AuditEvent or the Bundle's Provenance names it
}

// RequestView is an AuditEvent as the lineage shows it.
type RequestView struct {
	AuditEvent  string   `json:"auditEvent"`
	Recorded    string   `json:"recorded"`
	Interaction string   `json:"interaction"`
	Action      string   `json:"action"`
	Outcome     string   `json:"outcome"`
	Description string   `json:"description"`
	Client      string   `json:"client"`
	Address     string   `json:"address,omitempty"`
	Tenant      string   `json:"tenant,omitempty"`
	RequestID   string   `json:"requestId,omitempty"`
	TraceID     string   `json:"traceId,omitempty"`
	Entities    []string `json:"entities,omitempty"`
	// Share tells that the AuditEvent is Tenant's share of an all-tenant
	// client's request, not the request's whole record (which only
	// all-tenant readers see: FoldShares).
	Share bool `json:"share,omitempty"`

	// patients are the entities of role Patient.
	patients []string
}

// FoldShares returns rows without the tenants' shares of the all-tenant
// requests whose whole record (the same request: its id, time, client,
// interaction, outcome, trace) is in rows too, and
// how many it left out. Only an all-tenant reader sees both: for it a
// share repeats, for one tenant, the request its whole record shows, and
// listed beside it would show one request as two (probe p39 F7). A share
// whose whole record is not in rows stays (a tenant's reader sees only
// its share).
func FoldShares(rows []RequestView) ([]RequestView, int) {
	whole := map[[8]string]bool{}
	for _, r := range rows {
		if !r.Share {
			whole[r.request()] = true
		}
	}
	out := make([]RequestView, 0, len(rows))
	for _, r := range rows {
		if r.Share && whole[r.request()] {
			continue
		}
		out = append(out, r)
	}
	return out, len(rows) - len(out)
}

// request is what a share has of its request's whole record
// (audit.Record.SameRequest): the request id, and the rest for a request
// the edge gave none.
func (r RequestView) request() [8]string {
	return [8]string{r.RequestID, r.Recorded, r.Client, r.Address, r.Interaction, r.Action, r.Outcome, r.TraceID}
}

// Limits of one lineage answer.
const (
	maxLineageReceipts = 200
	maxAccesses        = 100
	// maxLineageReads bounds the lineage reads of a record a record query
	// shows, apart from its other requests, so that looking at a record
	// again and again never pushes out what happened to it.
	maxLineageReads = 20
)

var (
	traceIDPattern  = regexp.MustCompile(`^[0-9a-f]{32}$`)
	resourcePattern = regexp.MustCompile(`^[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$`)
)

// lineageQueryError is the 400 of a malformed lineage query.
func lineageQueryError(msg string) error {
	return outcome.New(outcome.Invalid, "invalid", "lineage-query-invalid", msg)
}

// Check returns the Invalid *outcome.Error (lineage-query-invalid) of a
// malformed query, which names what a valid one is, or nil: the one check
// of the API and the CLI, which needs no database.
func (q LineageQuery) Check() error {
	n := 0
	for _, set := range []bool{q.RecordID != "" || q.Source != "" || q.Kind != "", q.Resource != "", q.TraceID != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		return lineageQueryError("give exactly one of: source and record (and optionally kind), resource (Type/id), trace (a trace id)")
	}
	switch {
	case q.TraceID != "":
		if !traceIDPattern.MatchString(q.TraceID) {
			return lineageQueryError("trace must be 32 lowercase hex digits")
		}
	case q.Resource != "":
		typ, _, _ := strings.Cut(q.Resource, "/")
		if !resourcePattern.MatchString(q.Resource) || !r4.IsResourceType(typ) {
			return lineageQueryError("resource must be Type/id with a FHIR R4 resource type and a resource id, such as Observation/6231b0218d2d43adb0a6f46054209d61")
		}
	default:
		if q.Source == "" || q.RecordID == "" || strings.ContainsAny(q.Source+q.RecordID+q.Kind, "|,$\\") {
			return lineageQueryError("a record is named by source and record (and optionally kind)")
		}
		if q.Kind != "" && !slices.Contains(mapping.Kinds(), mapping.Kind(q.Kind)) {
			return lineageQueryError("unknown kind; valid: " + kindList())
		}
	}
	return nil
}

// lineageNotFound is the 404 of a lineage query about nothing the gateway
// holds.
func lineageNotFound(msg string) error {
	return outcome.New(outcome.NotFound, "not-found", "lineage-not-found", msg)
}

// BuildLineage answers q from st. Returns an Invalid *outcome.Error
// (lineage-query-invalid) for a malformed query, a NotFound one
// (lineage-not-found) for a record of which the gateway holds no receipt
// (no version of it was stored, in q.Tenant), a resource that exists in no
// version (in q.Tenant), or a trace with neither a receipt nor a request,
// and store errors (ErrUnavailable) unchanged.
func BuildLineage(ctx context.Context, st store.Store, q LineageQuery) (*Lineage, error) {
	if err := q.Check(); err != nil {
		return nil, err
	}
	var (
		provQuery        url.Values
		recordIDs        []string // a record query's identifiers, system|value
		resourcePatients []string
	)
	switch {
	case q.TraceID != "":
		provQuery = url.Values{"trace-id": {q.TraceID}}
	case q.Resource != "":
		typ, id, _ := strings.Cut(q.Resource, "/")
		versions, n, err := st.History(ctx, store.HistoryQuery{Type: typ, ID: id, Count: 1, Tenant: q.Tenant})
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, lineageNotFound("no version of this resource is stored (check the type and id: ids are case-sensitive)")
		}
		for _, v := range versions {
			if !v.Deleted {
				resourcePatients = PatientsIn(v.Type, v.ID, v.Body)
			}
		}
		provQuery = url.Values{"target": {q.Resource}}
	default:
		// A kind names the record whatever kind it was sent as: an
		// infusion's record is also the session of that infusion (records.md
		// "Record identity"), as a nested record is found through the
		// session nesting it (its Provenance names it by its own kind).
		kinds := mapping.Kinds()
		if q.Kind != "" {
			kinds = mapping.SameRecord(mapping.Kind(q.Kind))
		}
		for _, k := range kinds {
			recordIDs = append(recordIDs, mapping.RecordSystem(q.IdentifierBase, q.Source, k)+"|"+q.RecordID)
		}
		provQuery = url.Values{"entity:identifier": {strings.Join(recordIDs, ",")}}
	}
	out := &Lineage{Query: q, Receipts: []Receipt{}, Requests: []RequestView{}, patients: resourcePatients}
	provs, err := searchStored(ctx, st, q.Tenant, "Provenance", provQuery, maxLineageReceipts)
	if err != nil {
		return nil, err
	}
	ids := &deliveryIDs{st: st}
	deleted := &deletions{st: st}
	for _, r := range provs {
		p, err := fhirwire.Decode(r.Body)
		if err != nil {
			return nil, fmt.Errorf("stored %s/%s: %w", r.Type, r.ID, err)
		}
		if !gatewayWrote(r, p) {
			continue // a client's Provenance: not a receipt of the gateway's
		}
		out.nameRecords(recordIDs, p)
		rc, err := receipt(ctx, st, ids, q.Tenant, r.Tenant, p)
		if err != nil {
			return nil, err
		}
		if !q.ReceiptsOnly {
			if rc.Deleted, err = deleted.of(ctx, r.Tenant, rc.Resources); err != nil {
				return nil, err
			}
			if rc.Changed, err = deleted.changed(ctx, r.Tenant, rc.Resources); err != nil {
				return nil, err
			}
		}
		out.Receipts = append(out.Receipts, rc)
	}
	sort.SliceStable(out.Receipts, func(i, j int) bool { return out.Receipts[i].Received < out.Receipts[j].Received })

	switch {
	case q.TraceID != "":
		evs, err := searchAll(ctx, st, q.Tenant, "AuditEvent", url.Values{"trace-id": {q.TraceID}}, maxAccesses)
		if err != nil {
			return nil, err
		}
		for _, ev := range evs {
			out.Requests = append(out.Requests, ViewAuditEvent(ev))
		}
	default:
		seen := map[string]bool{}
		for _, rc := range out.Receipts {
			if rc.Request != nil {
				out.Requests = append(out.Requests, *rc.Request)
				seen[rc.Request.AuditEvent] = true
			}
		}
		if recordIDs != nil {
			// Every other request that named the record: the versions
			// re-sent or refused, dry runs, deliveries, and apart from
			// them (the newest few) the lineages read.
			named, lineage := strings.Join(recordIDs, ","), audit.SystemGatewayInteraction+"|lineage"
			for _, part := range []struct {
				params url.Values
				limit  int
			}{
				{url.Values{"entity:identifier": {named}, "subtype:not": {lineage}, "_sort": {"-date"}}, maxAccesses},
				{url.Values{"entity:identifier": {named}, "subtype": {lineage}, "_sort": {"-date"}}, maxLineageReads},
			} {
				evs, total, err := searchCounted(ctx, st, q.Tenant, "AuditEvent", part.params, part.limit)
				if err != nil {
					return nil, err
				}
				out.RequestsOmitted += max(total-len(evs), 0)
				for _, ev := range evs {
					out.nameRecords(recordIDs, ev)
					if v := ViewAuditEvent(ev); !seen[v.AuditEvent] {
						out.Requests = append(out.Requests, v)
					}
				}
			}
			if out.RequestsOmitted > 0 {
				out.RequestsSearch = "AuditEvent?entity:identifier=" + url.QueryEscape(named) + "&_sort=-date"
			}
		}
	}
	if q.Resource != "" && !q.ReceiptsOnly {
		// The requests that named the resource, and those that wrote it
		// (their AuditEvents name the Provenance listing the versions).
		refs := []string{q.Resource}
		for _, rc := range out.Receipts {
			refs = append(refs, rc.Provenance)
		}
		evs, err := searchAll(ctx, st, q.Tenant, "AuditEvent", url.Values{"entity": {strings.Join(refs, ",")}, "_sort": {"-date"}}, maxAccesses)
		if err != nil {
			return nil, err
		}
		for _, ev := range evs {
			out.Accesses = append(out.Accesses, ViewAuditEvent(ev))
		}
	}
	sort.SliceStable(out.Requests, func(i, j int) bool { return out.Requests[i].Recorded < out.Requests[j].Recorded })
	// Each request once: an all-tenant reader finds both the whole record
	// and the shares of an all-tenant request.
	var folded int
	out.Requests, out.SharesFolded = FoldShares(out.Requests)
	out.Accesses, folded = FoldShares(out.Accesses)
	out.SharesFolded += folded
	switch {
	case q.TraceID != "" && len(out.Receipts) == 0 && len(out.Requests) == 0:
		return nil, lineageNotFound("the gateway holds no receipt and no request of this trace")
	case q.RecordID != "" && len(out.Receipts) == 0 && !slices.ContainsFunc(out.Requests, func(r RequestView) bool { return r.Interaction != "lineage" }):
		// (Earlier lineage reads of a record never received are no story.)
		return nil, lineageNotFound("the gateway has stored no version of this record and no request named it (check the source system, the record id and the kind)")
	}
	return out, nil
}

// nameRecords adds to l.records those of ids (system|value) that doc, a
// Provenance or an AuditEvent, names in an entity's identifier.
func (l *Lineage) nameRecords(ids []string, doc map[string]any) {
	for _, e := range list(doc["entity"]) {
		sys, _ := dig(e, "what", "identifier", "system").(string)
		val, _ := dig(e, "what", "identifier", "value").(string)
		if id := sys + "|" + val; slices.Contains(ids, id) && !slices.Contains(l.records, id) {
			l.records = append(l.records, id)
		}
	}
}

// kindList names the native record kinds, comma-separated.
func kindList() string {
	var ks []string
	for _, k := range mapping.Kinds() {
		ks = append(ks, string(k))
	}
	return strings.Join(ks, ", ")
}

// gatewayWrote reports whether the Provenance r (decoded: p) is one the
// gateway wrote: it names the gateway's agents (clients may not write
// such a Provenance: the engine refuses it), and a native record's (not a
// replay's, which names the mapping version it revises) has the id the
// gateway derives from the tenant and the record version, so that a copy
// written under another id by an older build is not believed either.
func gatewayWrote(r *store.Resource, p map[string]any) bool {
	if !audit.IsGatewayProvenance(p) {
		return false
	}
	es := list(p["entity"])
	if len(es) == 0 || len(es) > 1 {
		return true // a Bundle's (no record), or a replay's (a revision entity too)
	}
	kind, version := extString(es[0], audit.ExtRecordKind), extString(es[0], audit.ExtRecordVersion)
	if kind == "" && version == "" {
		return true
	}
	var source string
	for _, a := range list(p["agent"]) {
		if sys, _ := dig(a, "who", "identifier", "system").(string); sys == audit.SystemSource {
			source, _ = dig(a, "who", "identifier", "value").(string)
		}
	}
	record, _ := dig(es[0], "what", "identifier", "value").(string)
	return r.ID == audit.RecordProvenanceID(r.Tenant, source, kind, record, version)
}

// searchAll runs a search in tenant and returns at most limit matching
// bodies.
func searchAll(ctx context.Context, st store.Store, tenant, typ string, params url.Values, limit int) ([]map[string]any, error) {
	out, _, err := searchCounted(ctx, st, tenant, typ, params, limit)
	return out, err
}

// searchCounted is searchAll with the number of all matches.
func searchCounted(ctx context.Context, st store.Store, tenant, typ string, params url.Values, limit int) ([]map[string]any, int, error) {
	page, err := searchPage(ctx, st, tenant, typ, params, limit)
	if err != nil {
		return nil, 0, err
	}
	out := make([]map[string]any, 0, len(page.Matches))
	for _, r := range page.Matches {
		doc, err := fhirwire.Decode(r.Body)
		if err != nil {
			return nil, 0, fmt.Errorf("stored %s/%s: %w", r.Type, r.ID, err)
		}
		out = append(out, doc)
	}
	return out, page.Total, nil
}

// searchStored runs a search in tenant and returns at most limit matching
// resources.
func searchStored(ctx context.Context, st store.Store, tenant, typ string, params url.Values, limit int) ([]*store.Resource, error) {
	page, err := searchPage(ctx, st, tenant, typ, params, limit)
	if err != nil {
		return nil, err
	}
	return page.Matches, nil
}

// searchPage runs a search in tenant: its first page of at most limit
// matches, with their total.
func searchPage(ctx context.Context, st store.Store, tenant, typ string, params url.Values, limit int) (*store.Page, error) {
	params.Set("_count", fmt.Sprint(limit))
	// A resource's requests are searched by the resource and every
	// receipt's Provenance at once: up to maxLineageReceipts+1 values
	// ORed, beyond what a client's search may OR.
	q, _, err := search.Limits{Values: maxLineageReceipts + 1}.Parse(typ, params, false)
	if err != nil {
		return nil, fmt.Errorf("lineage %s query: %w", typ, err)
	}
	q.Tenant = tenant
	return st.Search(ctx, q)
}

// deliveryIDs is the codec of the deliveries' public ids, read from the
// store once a lineage shows a delivery.
type deliveryIDs struct {
	st  store.Store
	ids *operator.IDs
}

func (d *deliveryIDs) get(ctx context.Context) (*operator.IDs, error) {
	if d.ids == nil {
		ids, err := operator.LoadIDs(ctx, d.st)
		if err != nil {
			return nil, err
		}
		d.ids = ids
	}
	return d.ids, nil
}

// receipt reads a Provenance the gateway wrote (decoded: p) in tenant
// provTenant, with its request and deliveries (their ids by ids); tenant
// is the query's.
func receipt(ctx context.Context, st store.Store, ids *deliveryIDs, tenant, provTenant string, p map[string]any) (Receipt, error) {
	id, _ := p["id"].(string)
	rc := Receipt{Provenance: "Provenance/" + id, Tenant: provTenant, Resources: []string{}, Deliveries: []operator.View{}}
	rc.Received, _ = p["recorded"].(string)
	rc.TraceID = extString(p, audit.ExtTraceID)
	if a, ok := dig(p, "activity", "coding").([]any); ok && len(a) > 0 {
		rc.Activity, _ = dig(a[0], "code").(string)
	}
	for _, r := range list(p["reason"]) {
		if text, ok := dig(r, "text").(string); ok {
			rc.Reason = text
			break
		}
	}
	for _, t := range list(p["target"]) {
		if ref, ok := dig(t, "reference").(string); ok {
			rc.Resources = append(rc.Resources, ref)
		}
	}
	for _, a := range list(p["agent"]) {
		sys, _ := dig(a, "who", "identifier", "system").(string)
		val, _ := dig(a, "who", "identifier", "value").(string)
		switch sys {
		case audit.SystemSource:
			rc.Source = val
		case audit.SystemMappingVersion:
			rc.MappingVersion = val
		case audit.SystemClient:
			rc.Client = val
		}
	}
	if rc.Client == "" {
		rc.Client = audit.AnonymousClient
	}
	if es := list(p["entity"]); len(es) > 0 {
		e := es[0]
		rc.Content, _ = dig(e, "what", "display").(string)
		rc.RecordID, _ = dig(e, "what", "identifier", "value").(string)
		rc.recordSystem, _ = dig(e, "what", "identifier", "system").(string)
		rc.Kind = extString(e, audit.ExtRecordKind)
		rc.Version = extString(e, audit.ExtRecordVersion)
		rc.ContentHash = extString(e, audit.ExtContentHash)
	}
	if rc.Source == "" {
		rc.RecordID = "" // a Bundle's identifier is not a record id
	}
	// The request that wrote it is the first to name it (lineage reads
	// and deliveries read name it later).
	evs, err := searchAll(ctx, st, tenant, "AuditEvent", url.Values{"entity": {"Provenance/" + id}, "_sort": {"date"}}, 1)
	if err != nil {
		return rc, err
	}
	if len(evs) > 0 {
		v := ViewAuditEvent(evs[0])
		rc.Request = &v
	}
	if rc.Source == "" {
		return rc, nil
	}
	// (An empty DeliveryFilter.Tenant is every tenant: the receipt's own
	// is checked below.)
	f := store.DeliveryFilter{Source: rc.Source, Kind: rc.Kind, RecordID: rc.RecordID, TraceID: rc.TraceID, Tenant: provTenant, Limit: 1000}
	items, err := st.Deliveries(ctx, f)
	if err != nil {
		return rc, err
	}
	sort.Slice(items, func(i, j int) bool { return items[i].ID < items[j].ID })
	for _, it := range items {
		// An item is this receipt's when the same request queued it: a
		// mapping replay's correction of the record version is a receipt
		// of its own (its trace), and an operator's re-send keeps the
		// trace of the item it copies.
		if it.Version != rc.Version || it.TraceID != rc.TraceID || it.Tenant != provTenant {
			continue
		}
		full, attempts, err := st.Delivery(ctx, it.ID)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return rc, err
		}
		codec, err := ids.get(ctx)
		if err != nil {
			return rc, err
		}
		rc.Deliveries = append(rc.Deliveries, operator.NewView(codec, full, attempts, false))
	}
	return rc, nil
}

// Patients are the AuditEvent's entities of role Patient.
func (v RequestView) Patients() []string { return v.patients }

// ViewAuditEvent summarises a stored AuditEvent (decoded JSON) as the
// lineage and the console show it.
func ViewAuditEvent(ev map[string]any) RequestView {
	id, _ := ev["id"].(string)
	v := RequestView{AuditEvent: "AuditEvent/" + id, TraceID: extString(ev, audit.ExtTraceID)}
	v.Recorded, _ = ev["recorded"].(string)
	v.Action, _ = ev["action"].(string)
	v.Outcome, _ = ev["outcome"].(string)
	v.Description, _ = ev["outcomeDesc"].(string)
	v.Tenant, _ = dig(ev, "source", "site").(string)
	v.Share = audit.IsShare(v.Description)
	if st := list(ev["subtype"]); len(st) > 0 {
		// The interaction's name, as the search form and the API's
		// lineage take it: a login is "login", not DICOM's 110122.
		sys, _ := dig(st[0], "system").(string)
		code, _ := dig(st[0], "code").(string)
		v.Interaction = audit.InteractionOf(sys, code)
	}
	for _, a := range list(ev["agent"]) {
		if req, _ := dig(a, "requestor").(bool); !req {
			continue
		}
		if cid, ok := dig(a, "who", "identifier", "value").(string); ok {
			v.Client = cid
		} else {
			v.Client, _ = dig(a, "who", "display").(string)
		}
		v.Address, _ = dig(a, "network", "address").(string)
	}
	for _, e := range list(ev["entity"]) {
		if ref, ok := dig(e, "what", "reference").(string); ok {
			v.Entities = append(v.Entities, ref)
			if role, _ := dig(e, "role", "code").(string); role == "1" {
				v.patients = append(v.patients, ref)
			}
		} else if sys, _ := dig(e, "what", "identifier", "system").(string); sys == audit.SystemRequestID {
			v.RequestID, _ = dig(e, "what", "identifier", "value").(string)
		}
	}
	return v
}

// dig follows object keys through decoded JSON.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// list returns a decoded JSON array (nil otherwise).
func list(v any) []any {
	a, _ := v.([]any)
	return a
}

// extString returns the valueString of v's extension with url.
func extString(v any, url string) string {
	for _, x := range list(dig(v, "extension")) {
		if u, _ := dig(x, "url").(string); u == url {
			s, _ := dig(x, "valueString").(string)
			return s
		}
	}
	return ""
}
