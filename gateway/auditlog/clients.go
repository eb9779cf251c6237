package auditlog

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// registration is a registered client as the database records it
// (store.ClientRecord.Registration): its tenant, its scopes and its keys'
// thumbprints by key id. Never key material.
type registration struct {
	Tenant string            `json:"tenant"`
	Scopes []string          `json:"scopes"`
	Keys   map[string]string `json:"keys"`
}

// ClientChanges are the ids of the registered clients RecordClients found
// added, changed and removed since the database last recorded them.
type ClientChanges struct {
	Added, Changed, Removed []string
}

// RecordClients compares the registered clients (the configuration's, as
// auth.Server.Registrations gives them) with those the database last
// recorded, and in one transaction records the new set and appends one
// AuditEvent per difference, on the hash chain: a client added (action
// C), changed (U: its tenant, scopes added and removed, keys added,
// removed or replaced under the same key id) or removed (D). Each is a
// DICOM 110137 User Security Attributes Changed event, subtype
// client-registration, the gateway (its Observer) the requesting agent,
// the client an entity by identifier (audit.SystemClient), kept with the
// all-tenant callers' AuditEvents (search.AllTenantsAudit): a change of
// the deployment's security configuration, for its operators. A database
// that recorded no client yet (the first start of this release) records
// every client as added.
//
// Gateways starting together on one database record each change once:
// each record is changed by a compare and swap on its digest
// (store.Tx.SwapClientRecord), so the later transaction fails with
// store.ErrConflict and its retry finds nothing left to record. Returns
// the store's errors; nothing is recorded then.
func (l *Log) RecordClients(ctx context.Context, clients []auth.Registration) (ClientChanges, error) {
	if l.disabled {
		return ClientChanges{}, nil
	}
	// want is each client's registration and its recorded bytes.
	type wanted struct {
		reg   registration
		bytes []byte
	}
	want := make(map[string]wanted, len(clients))
	for _, c := range clients {
		r := registration{Tenant: c.Tenant, Scopes: slices.Sorted(slices.Values(c.Scopes)), Keys: map[string]string{}}
		for _, kid := range c.KeyIDs {
			r.Keys[kid] = c.KeyThumbprints[kid]
		}
		b, err := json.Marshal(r) // map keys sorted: the same registration, the same bytes
		if err != nil {
			return ClientChanges{}, fmt.Errorf("record the registered clients: %w", err)
		}
		want[c.ID] = wanted{r, b}
	}
	var changes ClientChanges
	err := store.Retry(ctx, l.store, func(tx store.Tx) error {
		changes = ClientChanges{}
		recorded, err := tx.ClientRecords()
		if err != nil {
			return err
		}
		have := make(map[string]store.ClientRecord, len(recorded))
		for _, r := range recorded {
			have[r.ID] = r
		}
		ids := slices.Collect(maps.Keys(want))
		for id := range have {
			if _, ok := want[id]; !ok {
				ids = append(ids, id)
			}
		}
		slices.Sort(ids)
		now := l.now()
		for _, id := range ids {
			h, had := have[id]
			x, keep := want[id]
			w := x.reg
			var next *store.ClientRecord
			if keep {
				next = &store.ClientRecord{ID: id, Digest: audit.SHA256(x.bytes), Registration: x.bytes, Recorded: now}
				if had && h.Digest == next.Digest {
					continue
				}
			}
			// source.site "*" (search.AllTenants): kept with the all-tenant
			// callers' AuditEvents; the client's tenant is in the description.
			rec := audit.Record{ID: store.NewID(), Recorded: now, Interaction: "client-registration", Observer: l.observer,
				Tenant: search.AllTenants, ByGateway: true, NoHTTP: true, Identified: []audit.Identified{{System: audit.SystemClient, Value: id, Description: "the registered client"}}}
			switch {
			case !had:
				rec.Action, rec.Description = "C", "registered client added: "+describe(w)
				changes.Added = append(changes.Added, id)
			case !keep:
				var old registration
				rec.Action, rec.Description = "D", "registered client removed"
				if json.Unmarshal(h.Registration, &old) == nil {
					rec.Description += " (it had " + describe(old) + ")"
				}
				changes.Removed = append(changes.Removed, id)
			default:
				rec.Action = "U"
				var old registration
				if err := json.Unmarshal(h.Registration, &old); err != nil {
					rec.Description = "registered client changed (its previous record is unreadable): now " + describe(w)
				} else {
					rec.Description = "registered client changed: " + difference(old, w)
				}
				changes.Changed = append(changes.Changed, id)
			}
			if err := tx.SwapClientRecord(id, h.Digest, next); err != nil {
				return err
			}
			if err := newEvent(search.AllTenantsAudit, rec).put(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return ClientChanges{}, fmt.Errorf("record the registered clients: %w", err)
	}
	return changes, nil
}

// describe says what r registers, in the words of an AuditEvent's
// description: no key material, only key ids.
func describe(r registration) string {
	return "tenant " + search.TenantName(r.Tenant) + "; scopes " + names(r.Scopes) + "; keys " + names(slices.Sorted(maps.Keys(r.Keys)))
}

// difference says what changed from old to now: the tenant, the scopes
// added and removed, the keys added, removed and replaced (another key
// under the same key id).
func difference(old, now registration) string {
	var parts []string
	if old.Tenant != now.Tenant {
		parts = append(parts, "tenant "+search.TenantName(old.Tenant)+" -> "+search.TenantName(now.Tenant))
	}
	if added := missing(now.Scopes, old.Scopes); len(added) > 0 {
		parts = append(parts, "scopes added: "+names(added))
	}
	if removed := missing(old.Scopes, now.Scopes); len(removed) > 0 {
		parts = append(parts, "scopes removed: "+names(removed))
	}
	oldKeys, nowKeys := slices.Sorted(maps.Keys(old.Keys)), slices.Sorted(maps.Keys(now.Keys))
	if added := missing(nowKeys, oldKeys); len(added) > 0 {
		parts = append(parts, "keys added: "+names(added))
	}
	if removed := missing(oldKeys, nowKeys); len(removed) > 0 {
		parts = append(parts, "keys removed: "+names(removed))
	}
	var replaced []string
	for _, kid := range nowKeys {
		if tp, ok := old.Keys[kid]; ok && tp != now.Keys[kid] {
			replaced = append(replaced, kid)
		}
	}
	if len(replaced) > 0 {
		parts = append(parts, "keys replaced (another key under the same key id): "+names(replaced))
	}
	if len(parts) == 0 {
		return "its record's form changed, not its tenant, scopes or keys"
	}
	return strings.Join(parts, "; ")
}

// missing are the members of a (sorted) that b lacks.
func missing(a, b []string) []string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}

// names is ns, space-separated; "none" for none.
func names(ns []string) string {
	if len(ns) == 0 {
		return "none"
	}
	return strings.Join(ns, " ")
}
