package auditlog

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// deletions finds which of the resources receipts produced are deleted
// or changed since, reading each resource's current version once however
// many receipts name it.
type deletions struct {
	st      store.Store
	current map[string]*store.Resource // by tenant and Type/id; nil value: none stored
	changes map[string]*ChangedView    // by tenant and Type/id/_history/n; nil value: a native record's
}

// currentOf is the current version of typ/id in tenant (nil if none).
func (d *deletions) currentOf(ctx context.Context, tenant, typ, id string) (*store.Resource, error) {
	key := tenant + "\x00" + typ + "/" + id
	if v, ok := d.current[key]; ok {
		return v, nil
	}
	versions, _, err := d.st.History(ctx, store.HistoryQuery{Type: typ, ID: id, Count: 1, Tenant: tenant})
	if err != nil {
		return nil, err
	}
	var v *store.Resource
	if len(versions) > 0 {
		v = versions[0]
	}
	if d.current == nil {
		d.current = map[string]*store.Resource{}
	}
	d.current[key] = v
	return v, nil
}

// of are the deleted ones among refs (Type/id/_history/n or Type/id) in
// tenant, in refs' order.
func (d *deletions) of(ctx context.Context, tenant string, refs []string) ([]DeletedView, error) {
	var out []DeletedView
	for _, ref := range refs {
		typ, rest, _ := strings.Cut(ref, "/")
		id, _, _ := strings.Cut(rest, "/")
		if typ == "" || id == "" {
			continue
		}
		w, err := d.currentOf(ctx, tenant, typ, id)
		if err != nil {
			return nil, err
		}
		if w == nil || !w.Deleted {
			continue
		}
		v := DeletedView{Resource: typ + "/" + id, Version: fmt.Sprintf("%s/%s/_history/%d", typ, id, w.Version),
			At: fhirwire.Instant(w.LastUpdated)}
		if !slices.ContainsFunc(out, func(x DeletedView) bool { return x.Resource == v.Resource }) {
			out = append(out, v)
		}
	}
	return out, nil
}

// changed are the ones among refs (Type/id/_history/n) in tenant whose
// current version is later than n, not a deletion, and not written by a
// native record's receipt (whose Provenance, naming a source, targets
// it: that version is delivered): a client's write through the FHIR API.
func (d *deletions) changed(ctx context.Context, tenant string, refs []string) ([]ChangedView, error) {
	var out []ChangedView
	for _, ref := range refs {
		typ, rest, _ := strings.Cut(ref, "/")
		id, n, _ := strings.Cut(rest, "/_history/")
		had, err := strconv.ParseInt(n, 10, 64)
		if typ == "" || id == "" || err != nil {
			continue
		}
		w, err := d.currentOf(ctx, tenant, typ, id)
		if err != nil {
			return nil, err
		}
		if w == nil || w.Deleted || w.Version <= had {
			continue
		}
		v, err := d.changeOf(ctx, tenant, w)
		if err != nil {
			return nil, err
		}
		if v != nil && !slices.ContainsFunc(out, func(x ChangedView) bool { return x.Resource == v.Resource }) {
			out = append(out, *v)
		}
	}
	return out, nil
}

// changeOf describes the version w, or is nil when a native record's
// receipt wrote it.
func (d *deletions) changeOf(ctx context.Context, tenant string, w *store.Resource) (*ChangedView, error) {
	res := w.Type + "/" + w.ID
	ver := fmt.Sprintf("%s/_history/%d", res, w.Version)
	key := tenant + "\x00" + ver
	if v, ok := d.changes[key]; ok {
		return v, nil
	}
	v := &ChangedView{Resource: res, Version: ver, At: fhirwire.Instant(w.LastUpdated), Method: w.Method}
	// The Provenance naming that version: a receipt's (delivered) or a
	// Bundle's (its client).
	// The newest first: a resource named by more Provenances than the
	// cap keeps the recent ones, the version's among them.
	provs, err := searchStored(ctx, d.st, tenant, "Provenance", url.Values{"target": {res}, "_sort": {"-_lastUpdated"}}, maxLineageReceipts)
	if err != nil {
		return nil, err
	}
	for _, r := range provs {
		p, err := fhirwire.Decode(r.Body)
		if err != nil {
			return nil, fmt.Errorf("stored %s/%s: %w", r.Type, r.ID, err)
		}
		if !slices.ContainsFunc(list(p["target"]), func(t any) bool { s, _ := dig(t, "reference").(string); return s == ver }) {
			continue
		}
		if !gatewayWrote(r, p) {
			continue
		}
		for _, a := range list(p["agent"]) {
			sys, _ := dig(a, "who", "identifier", "system").(string)
			val, _ := dig(a, "who", "identifier", "value").(string)
			if sys == audit.SystemSource {
				v = nil // a native record's: delivered as that receipt
				break
			}
			if sys == audit.SystemClient {
				v.Client = val
			}
		}
		break
	}
	if v != nil && v.Client == "" {
		// A single write's AuditEvent names the version it wrote. Writes
		// only (create, update, delete, and E for a transaction or batch):
		// reads name the version too, and would push the write out of
		// the newest maxAccesses or stand in for it.
		evs, err := searchAll(ctx, d.st, tenant, "AuditEvent", url.Values{"entity": {res}, "action": {"C,U,D,E"}, "_sort": {"-date"}}, maxAccesses)
		if err != nil {
			return nil, err
		}
		for _, ev := range evs {
			if e := ViewAuditEvent(ev); slices.Contains(e.Entities, ver) {
				v.Client = e.Client
				break
			}
		}
	}
	if d.changes == nil {
		d.changes = map[string]*ChangedView{}
	}
	d.changes[key] = v
	return v, nil
}
