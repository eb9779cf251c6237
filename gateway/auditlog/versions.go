package auditlog

import (
	"context"
	"fmt"
	"net/url"
	"slices"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// VersionView is one version of a resource as an auditor reads its
// history: when and how it was written, by which request, and, for a
// version a native record or a Bundle produced, that receipt with its
// deliveries.
type VersionView struct {
	Version     int64
	LastUpdated string
	Deleted     bool
	// Method is the HTTP method that wrote the version, as the store
	// recorded it ("" for versions stored before it did).
	Method string
	// Client is who wrote it: the receipt's client, else the writing
	// request's ("" when the gateway holds no record of the write).
	Client string
	// Request is the AuditEvent of the request that wrote the version
	// (nil when none is found: an AuditEvent beyond the newest
	// maxAccesses writes of the resource, or none kept).
	Request *RequestView
	// Receipt is the native record version or Bundle whose Provenance
	// lists this version (nil: a single write through the FHIR API, a
	// deletion).
	Receipt *Receipt
}

// Versions describes versions, the versions of one resource the engine
// disclosed to the reader (newest first, as History answers), by the
// lineage l of that resource (BuildLineage with Resource; nil: no receipt
// names it): the receipt whose Provenance lists each version, and for the
// others the write whose AuditEvent names the version, among the newest
// maxAccesses writes of the resource in the reader's tenant (a shared
// resource another tenant holds has no lineage in the reader's: its
// writers are not the reader's to see). It reads only
// AuditEvents (the record of who did what), never another version's
// content. Returns store errors (ErrUnavailable) unchanged.
func Versions(ctx context.Context, st store.Store, tenant string, l *Lineage, versions []*store.Resource) ([]VersionView, error) {
	out := make([]VersionView, 0, len(versions))
	if len(versions) == 0 {
		return out, nil
	}
	byRef := map[string]*Receipt{}
	if l != nil {
		for i := range l.Receipts {
			for _, ref := range l.Receipts[i].Resources {
				if _, ok := byRef[ref]; !ok {
					byRef[ref] = &l.Receipts[i]
				}
			}
		}
	}
	var writes []RequestView
	loaded := false
	for _, v := range versions {
		ref := fmt.Sprintf("%s/%s/_history/%d", v.Type, v.ID, v.Version)
		vv := VersionView{Version: v.Version, LastUpdated: fhirwire.Instant(v.LastUpdated), Deleted: v.Deleted, Method: v.Method}
		if rc := byRef[ref]; rc != nil {
			vv.Receipt, vv.Request, vv.Client = rc, rc.Request, rc.Client
			out = append(out, vv)
			continue
		}
		if !loaded {
			// The writes of the resource (create, update, delete, and E for
			// a transaction or batch), newest first: reads name the
			// version too, and would crowd out the write.
			evs, err := searchAll(ctx, st, tenant, "AuditEvent", url.Values{"entity": {v.Type + "/" + v.ID},
				"action": {"C,U,D,E"}, "_sort": {"-date"}}, maxAccesses)
			if err != nil {
				return nil, err
			}
			for _, ev := range evs {
				writes = append(writes, ViewAuditEvent(ev))
			}
			writes, _ = FoldShares(writes)
			loaded = true
		}
		// The oldest request naming the version wrote it (a later one
		// could only name it in a failed write's or a read's way).
		for i := len(writes) - 1; i >= 0; i-- {
			if w := writes[i]; w.Outcome == "0" && slices.Contains(w.Entities, ref) {
				vv.Request, vv.Client = &writes[i], w.Client
				break
			}
		}
		out = append(out, vv)
	}
	return out, nil
}
