package sqlstore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// The reads of bulk export and replay (store.Bulk): keyset pages, never
// OFFSET, so that a walk over a million rows reads each once.

// Export implements store.Bulk: one statement per page, the current rows of
// the type in primary key order (type, id) after q.After, joined with
// their versions.
func (s *Store) Export(ctx context.Context, q store.ExportQuery) ([]*store.Resource, error) {
	if q.Type == "" {
		return nil, fmt.Errorf("%s: export: a type is required", s.d.Name)
	}
	if q.Type == "AuditEvent" && len(q.Filters) > 0 {
		// A filter reads the index rows, which AuditEvents get after
		// their commit: wait for those committed so far, as a search does.
		if err := s.catchUpAudits(ctx); err != nil {
			return nil, err
		}
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 1000
	}
	live := s.d.NotDeleted
	if q.Deleted {
		if len(q.Filters) > 0 {
			return nil, fmt.Errorf("%s: export: filters on deleted resources", s.d.Name)
		}
		live = `NOT (` + live + `)`
	}
	b := NewBuilder(s.d, q.Type, s.now())
	b.Add(`SELECT `+resourceCols+` FROM current c
		JOIN resources r ON r.type = c.type AND r.id = c.id AND r.version = c.version
		WHERE `+live+` AND c.type = ?`, q.Type)
	cond, args := tenantCond("c", q.Tenant)
	b.Add(cond, args...)
	// The far ends of the filters' _has clauses are confined to the
	// exporting tenant like the resources exported (nothing is shared:
	// an export holds the tenant's own resources).
	b.tenant = q.Tenant
	if q.After != "" {
		b.Add(` AND c.id > ?`, q.After)
	}
	if !q.Since.IsZero() {
		b.Add(` AND c.last_updated > ?`, q.Since.UnixMilli())
	}
	if len(q.Filters) > 0 {
		b.Add(` AND (`)
		for i, f := range q.Filters {
			if i > 0 {
				b.Add(` OR `)
			}
			b.Add(`(1 = 1`)
			for j := range f.Clauses {
				b.Add(` AND `)
				if err := b.clause(&f.Clauses[j]); err != nil {
					return nil, err
				}
			}
			b.Add(`)`)
		}
		if !q.ChangedAfter.IsZero() {
			b.Add(` OR c.last_updated > ?`, q.ChangedAfter.UnixMilli())
		}
		b.Add(`)`)
	}
	b.Add(` ORDER BY c.type, c.id LIMIT ?`, limit)
	var out []*store.Resource
	err := s.db.Read(ctx, func(c Conn) error {
		rows, err := c.Query(ctx, b.SQL(), b.Args()...)
		if err == nil {
			out, err = collect(rows)
		}
		if err != nil {
			return fmt.Errorf("%s: export %s: %w", s.d.Name, q.Type, s.err(ctx, err))
		}
		return nil
	})
	return out, err
}

// ReadCurrent implements store.Bulk: one statement per chunk of refs,
// the ids of each type in one IN list.
func (s *Store) ReadCurrent(ctx context.Context, refs []string) ([]*store.Resource, error) {
	var out []*store.Resource
	err := s.db.Read(ctx, func(c Conn) error {
		out = out[:0]
		return s.chunksOf(len(refs), func(start, end int) error {
			byType := map[string][]string{}
			var types []string
			for _, ref := range refs[start:end] {
				typ, id, ok := strings.Cut(ref, "/")
				if !ok || typ == "" || id == "" {
					continue
				}
				if byType[typ] == nil {
					types = append(types, typ)
				}
				byType[typ] = append(byType[typ], id)
			}
			if len(types) == 0 {
				return nil
			}
			b := s.builder()
			b.Add(`SELECT ` + resourceCols + ` FROM current c
				JOIN resources r ON r.type = c.type AND r.id = c.id AND r.version = c.version
				WHERE ` + s.d.NotDeleted + ` AND (`)
			for i, typ := range types {
				if i > 0 {
					b.Add(` OR `)
				}
				b.Add(`(c.type = ? AND `, typ)
				b.in("c.id", byType[typ])
				b.Add(`)`)
			}
			b.Add(`)`)
			rows, err := c.Query(ctx, b.SQL(), b.Args()...)
			if err != nil {
				return fmt.Errorf("%s: read current: %w", s.d.Name, s.err(ctx, err))
			}
			got, err := collect(rows)
			if err != nil {
				return fmt.Errorf("%s: read current: %w", s.d.Name, s.err(ctx, err))
			}
			out = append(out, got...)
			return nil
		})
	})
	return out, err
}

// chunksOf calls fn over [0, n) in chunks of the size a statement's
// arguments allow.
func (s *Store) chunksOf(n int, fn func(start, end int) error) error {
	for start := 0; start < n; start += chunk {
		if err := fn(start, min(start+chunk, n)); err != nil {
			return err
		}
	}
	return nil
}

const ledgerCols = `source, kind, record_id, version, content_hash, response, received, tenant, mapping_version, input`

// ledgerKeyCols are what LedgerEntries reads with store.LedgerQuery.KeysOnly.
const ledgerKeyCols = `source, kind, record_id, version, received, tenant`

// LedgerEntries implements store.Bulk: a page in primary key order.
func (s *Store) LedgerEntries(ctx context.Context, q store.LedgerQuery) ([]*store.Ledger, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 500
	}
	b := s.builder()
	cols := ledgerCols
	if q.KeysOnly {
		cols = ledgerKeyCols
	}
	b.Add(`SELECT ` + cols + ` FROM ledger WHERE 1 = 1`)
	switch {
	case q.Tenant == search.AllTenants:
	case !validTenant(q.Tenant):
		return nil, nil
	default:
		b.Add(` AND tenant = ?`, q.Tenant)
	}
	if q.Kind != "" {
		b.Add(` AND kind = ?`, q.Kind)
	}
	if !q.Since.IsZero() {
		b.Add(` AND received >= ?`, q.Since.UnixMilli())
	}
	if a := q.After; a != (store.LedgerKey{}) {
		b.Add(` AND (source, kind, record_id, version) > (?, ?, ?, ?)`, a.Source, a.Kind, a.RecordID, a.Version)
	}
	b.Add(` ORDER BY source, kind, record_id, version LIMIT ?`, limit)
	var out []*store.Ledger
	err := s.db.Read(ctx, func(c Conn) error {
		rows, err := c.Query(ctx, b.SQL(), b.Args()...)
		if err != nil {
			return fmt.Errorf("%s: ledger entries: %w", s.d.Name, s.err(ctx, err))
		}
		defer rows.Close()
		out = out[:0]
		for rows.Next() {
			l := &store.Ledger{}
			var received int64
			dest := []any{&l.Source, &l.Kind, &l.RecordID, &l.Version, &l.ContentHash, &l.Response, &received,
				&l.Tenant, &l.MappingVersion, &l.Input}
			if q.KeysOnly {
				dest = []any{&l.Source, &l.Kind, &l.RecordID, &l.Version, &received, &l.Tenant}
			}
			if err := rows.Scan(dest...); err != nil {
				return fmt.Errorf("%s: ledger entries: %w", s.d.Name, s.err(ctx, err))
			}
			l.Received = time.UnixMilli(received).UTC()
			out = append(out, l)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("%s: ledger entries: %w", s.d.Name, s.err(ctx, err))
		}
		return nil
	})
	return out, err
}

// LedgerTenants implements store.Bulk.
func (s *Store) LedgerTenants(ctx context.Context) ([]string, error) {
	var out []string
	err := s.db.Read(ctx, func(c Conn) error {
		rows, err := c.Query(ctx, `SELECT DISTINCT tenant FROM ledger ORDER BY tenant`)
		if err != nil {
			return fmt.Errorf("%s: ledger tenants: %w", s.d.Name, s.err(ctx, err))
		}
		defer rows.Close()
		out = out[:0]
		for rows.Next() {
			var t string
			if err := rows.Scan(&t); err != nil {
				return fmt.Errorf("%s: ledger tenants: %w", s.d.Name, s.err(ctx, err))
			}
			out = append(out, t)
		}
		return rows.Err()
	})
	return out, err
}

// SetLedgerMapping implements store.Tx.
func (t *tx) SetLedgerMapping(source, kind, recordID, version, mappingVersion string) error {
	s := t.s
	n, err := t.c.Exec(t.ctx, s.bind(`UPDATE ledger SET mapping_version = ?
		WHERE source = ? AND kind = ? AND record_id = ? AND version = ?`),
		s.text(mappingVersion), s.text(source), s.text(kind), s.text(recordID), s.text(version))
	if err != nil {
		return fmt.Errorf("%s: SetLedgerMapping: %w", s.d.Name, s.err(t.ctx, err))
	}
	if n == 0 {
		return fmt.Errorf("ledger %s/%s/%s/%s: %w", source, kind, recordID, version, store.ErrNotFound)
	}
	return nil
}
