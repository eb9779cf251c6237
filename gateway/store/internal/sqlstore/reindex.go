package sqlstore

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// Reindexing (store.Reindexer).
//
// A batch reads, in one read snapshot, the current versions of the next
// resources in (type, id) order with their bodies, extracts their index
// rows as Put would, reads the rows the database holds for them, and
// compares the two as multisets (the order of rows means nothing). Only
// the resources that differ are written, in a write transaction: their
// rows deleted and inserted again, as a flush does for an update. A
// database indexed by this build is therefore only read, and its writers
// never wait for a pass.
//
// Concurrent writers: the write transaction reads the current version of
// each resource it is about to rewrite and leaves out those no longer at
// the version compared: a resource updated since the snapshot was indexed
// by its writer. On SQLite the transaction holds the database's write
// lock, so nothing changes after that read; where writers run in parallel
// (Dialect.RowLocks) the read locks the current rows (FOR UPDATE), and a
// writer updating one of them waits for the batch to commit, then
// replaces its rows.

// Reindex implements store.Reindexer: the comparison runs in a read
// snapshot, so that a pass over an index that is this build's takes no
// write lock; only the resources that differ are written, in one write
// transaction, those still at the version compared.
func (s *Store) Reindex(ctx context.Context, q store.ReindexQuery) (store.ReindexBatch, error) {
	if q.Count <= 0 {
		q.Count = store.DefaultReindexCount
	}
	var out store.ReindexBatch
	var diff []reindexed
	err := s.db.Snapshot(ctx, func(c Conn) error {
		var err error
		out, diff, err = s.compareIndex(ctx, c, q)
		return err
	})
	if err == nil && !q.DryRun && len(diff) > 0 {
		var rewritten []reindexed
		err = s.write(ctx, func(t *tx) error {
			// The rows other writes of this transaction buffered.
			if err := t.flush(); err != nil {
				return err
			}
			kept, err := s.stillCurrent(t.ctx, t.c, diff)
			if err != nil {
				return err
			}
			if err := t.c.Batch(t.ctx, s.rewriteStmts(kept)); err != nil {
				return err
			}
			rewritten = kept
			return nil
		})
		diff = rewritten
	}
	if err != nil {
		return store.ReindexBatch{}, fmt.Errorf("%s: reindex: %w", s.d.Name, s.err(ctx, err))
	}
	out.Changed, out.ChangedTypes = changedTypes(diff)
	return out, nil
}

// changedTypes counts the resources of diff, in all and by type.
func changedTypes(diff []reindexed) (int, map[string]int) {
	if len(diff) == 0 {
		return 0, nil
	}
	by := map[string]int{}
	for _, r := range diff {
		by[r.key.typ]++
	}
	return len(diff), by
}

// reindexed is a resource whose index rows differ from its body's.
type reindexed struct {
	key     resKey
	version int64
	rows    indexRows
}

// compareIndex reads the batch q selects and returns it with the
// resources whose stored index rows differ from their bodies'.
func (s *Store) compareIndex(ctx context.Context, c Conn, q store.ReindexQuery) (store.ReindexBatch, []reindexed, error) {
	var out store.ReindexBatch
	b := s.builder()
	b.Add(`SELECT c.type, c.id, c.version, r.body FROM current c
		JOIN resources r ON r.type = c.type AND r.id = c.id AND r.version = c.version
		WHERE ` + s.d.NotDeleted)
	if q.Type != "" {
		b.Add(` AND c.type = ?`, q.Type)
	}
	cond, args := tenantCond("c", q.Tenant)
	b.Add(cond, args...)
	if q.After != (store.ResourceKey{}) {
		b.Add(` AND (c.type, c.id) > (?, ?)`, q.After.Type, q.After.ID)
	}
	b.Add(` ORDER BY c.type, c.id LIMIT ?`, q.Count)
	rows, err := c.Query(ctx, b.SQL(), b.Args()...)
	if err != nil {
		return out, nil, err
	}
	var batch []reindexed
	for rows.Next() {
		var r reindexed
		var body []byte
		if err := rows.Scan(&r.key.typ, &r.key.id, &r.version, &body); err != nil {
			rows.Close()
			return out, nil, err
		}
		out.Checked++
		out.Last = store.ResourceKey{Type: r.key.typ, ID: r.key.id}
		if s.bodyRows(&r.rows, r.key, body) != nil {
			// A body that does not unpack or decode (a damaged row) is
			// left as it is, and named: the pass goes on.
			out.Unreadable = append(out.Unreadable, out.Last)
			continue
		}
		batch = append(batch, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return out, nil, err
	}
	out.Done = out.Checked < q.Count
	if len(batch) == 0 {
		return out, nil, nil
	}
	if batch, err = s.indexedAudits(ctx, c, batch); err != nil {
		return out, nil, err
	}
	stored, err := s.storedRows(ctx, c, batch)
	if err != nil {
		return out, nil, err
	}
	var diff []reindexed
	for _, r := range batch {
		for tbl := range indexTables {
			if !sameRows(r.rows[tbl], stored[r.key][tbl]) {
				diff = append(diff, r)
				break
			}
		}
	}
	return out, diff, nil
}

// bodyRows sets rows to the index rows of a stored body of k, as Put
// stores them; an error if the body does not unpack or decode.
func (s *Store) bodyRows(rows *indexRows, k resKey, stored []byte) error {
	body, err := store.UnpackBody(stored)
	if err != nil {
		return err
	}
	entries, err := extractJSON(k.typ, body)
	if err != nil {
		return err
	}
	return s.entryRows(rows, entries)
}

// indexedAudits leaves out of batch the AuditEvents the audit indexer has
// not reached yet: it will write their rows (see auditindex.go), and rows
// written here too would be there twice.
func (s *Store) indexedAudits(ctx context.Context, c Conn, batch []reindexed) ([]reindexed, error) {
	var ids []string
	for _, r := range batch {
		if r.key.typ == "AuditEvent" {
			ids = append(ids, r.key.id)
		}
	}
	if len(ids) == 0 {
		return batch, nil
	}
	b := s.builder()
	b.Add(`SELECT a.id FROM audit_chain a JOIN audit_index_head h ON h.one = 1 WHERE a.seq > h.seq AND a.`)
	b.in("id", ids)
	rows, err := c.Query(ctx, b.SQL(), b.Args()...)
	if err != nil {
		return nil, err
	}
	pending := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		pending[id] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return slices.DeleteFunc(batch, func(r reindexed) bool { return r.key.typ == "AuditEvent" && pending[r.key.id] }), nil
}

// storedRows reads the index rows the database holds for the resources of
// batch, a query per table and type.
func (s *Store) storedRows(ctx context.Context, c Conn, batch []reindexed) (map[resKey]*indexRows, error) {
	out := make(map[resKey]*indexRows, len(batch))
	for _, r := range batch {
		out[r.key] = new(indexRows)
	}
	types, byType := groupByType(batch)
	for tbl := range indexTables {
		t := &indexTables[tbl]
		names := make([]string, len(t.cols))
		for i, col := range t.cols {
			names[i] = col.name
		}
		for _, typ := range types {
			b := s.builder()
			b.Add(`SELECT id, `+strings.Join(names, ", ")+` FROM `+t.name+` WHERE type = ? AND `, typ)
			b.in("id", byType[typ])
			rows, err := c.Query(ctx, b.SQL(), b.Args()...)
			if err != nil {
				return nil, err
			}
			for rows.Next() {
				var id string
				dst, vals := scanDests(t.cols)
				if err := rows.Scan(append([]any{&id}, dst...)...); err != nil {
					rows.Close()
					return nil, err
				}
				ir := out[resKey{typ, id}]
				ir[tbl] = append(ir[tbl], vals())
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// groupByType is the types of rs, in order of appearance, and the ids of
// each.
func groupByType(rs []reindexed) (types []string, ids map[string][]string) {
	ids = map[string][]string{}
	for _, r := range rs {
		if ids[r.key.typ] == nil {
			types = append(types, r.key.typ)
		}
		ids[r.key.typ] = append(ids[r.key.typ], r.key.id)
	}
	return types, ids
}

// scanDests are scan destinations for a row of cols and a function giving
// the values scanned, typed as entryRow types them.
func scanDests(cols []column) ([]any, func() []any) {
	dst := make([]any, len(cols))
	for i, col := range cols {
		switch col.array {
		case "bigint":
			dst[i] = new(int64)
		case "float8":
			dst[i] = new(float64)
		default:
			dst[i] = new(string)
		}
	}
	return dst, func() []any {
		vals := make([]any, len(dst))
		for i, d := range dst {
			switch p := d.(type) {
			case *int64:
				vals[i] = *p
			case *float64:
				vals[i] = *p
			case *string:
				vals[i] = *p
			}
		}
		return vals
	}
}

// sameRows tells whether a and b hold the same rows, in any order.
func sameRows(a, b [][]any) bool {
	if len(a) != len(b) {
		return false
	}
	if inOrder(a, b) {
		return true // the common case, without building keys: rows read back in the order they were written
	}
	ka, kb := rowKeys(a), rowKeys(b)
	return slices.Equal(ka, kb)
}

// inOrder tells whether a and b hold the same rows in the same order.
func inOrder(a, b [][]any) bool {
	for i := range a {
		if len(a[i]) != len(b[i]) {
			return false
		}
		for j := range a[i] {
			if a[i][j] != b[i][j] {
				return false
			}
		}
	}
	return true
}

// rowKeys are rows as sorted strings that tell them apart.
func rowKeys(rows [][]any) []string {
	keys := make([]string, len(rows))
	for i, row := range rows {
		var sb strings.Builder
		for _, v := range row {
			switch x := v.(type) {
			case string:
				sb.WriteString("s" + strconv.Itoa(len(x)) + ":" + x)
			case int64:
				sb.WriteString("i" + strconv.FormatInt(x, 10) + ";")
			case float64:
				sb.WriteString("f" + strconv.FormatFloat(x, 'g', -1, 64) + ";")
			default:
				fmt.Fprintf(&sb, "?%v;", x)
			}
		}
		keys[i] = sb.String()
	}
	slices.Sort(keys)
	return keys
}

// stillCurrent returns the resources of diff whose current version is
// still the one compared (a resource written since was indexed by its
// writer) and, where writers run in parallel, locks their current rows
// until the transaction ends (see above). diff is left as it is: the
// transaction may run again.
func (s *Store) stillCurrent(ctx context.Context, c Conn, diff []reindexed) ([]reindexed, error) {
	now := map[resKey]int64{}
	types, byType := groupByType(diff)
	for _, typ := range types {
		b := s.builder()
		b.Add(`SELECT id, version FROM current WHERE type = ? AND `, typ)
		b.in("id", byType[typ])
		b.Add(` ORDER BY id` + s.forUpdate())
		rows, err := c.Query(ctx, b.SQL(), b.Args()...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id string
			var v int64
			if err := rows.Scan(&id, &v); err != nil {
				rows.Close()
				return nil, err
			}
			now[resKey{typ, id}] = v
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	var kept []reindexed
	for _, r := range diff {
		if now[r.key] == r.version {
			kept = append(kept, r)
		}
	}
	return kept, nil
}

// rewriteStmts replace the index rows of the resources of diff with
// theirs.
func (s *Store) rewriteStmts(diff []reindexed) []Stmt {
	var stmts []Stmt
	for _, r := range diff {
		stmts = s.indexDelStmts(stmts, r.key)
		stmts = append(stmts, Stmt{SQL: s.bind(sqlDelCriteriaKeys), Args: []any{r.key.typ, r.key.id, "%" + r.key.typ + "?%"}})
	}
	return s.indexRowStmts(stmts, len(diff), func(i int) (resKey, *indexRows) { return diff[i].key, &diff[i].rows })
}

// sqlDelCriteriaKeys deletes the conditional keys of search criteria
// (search.Key: "Type?param=value", a tenant's "tenant:<t>|Type?...") that
// a resource whose index rows a pass rewrites holds. They were normalised
// by the build that wrote the rows (search.Normalize), and one could be the
// key the current build gives other criteria, which would refuse another
// resource's conditional create as if it raced this one. A key only keeps
// two racing creates from both succeeding (the search decides what
// matches), so dropping it, as a new version of the resource does, loses
// nothing. The other keys (ingest's MRN key "Patient|mrn|<hash>", a
// tenant's claims) hold no "?" and stay.
const sqlDelCriteriaKeys = `DELETE FROM conditional_keys WHERE type = ? AND id = ? AND key LIKE ?`

// IndexState is both stores' migration to the recorded index version
// (SQLite's schema 12, PostgreSQL's 14): index_state holds the
// search.IndexVersion that wrote every current resource's index rows, as
// far as the gateway knows. A database without resources (a new one) gets
// the version of the build creating it. One with rows of the builds before
// the patient rows were kept once (SQLite's schema 11, PostgreSQL's 12) is
// recognised by a patient row of a type that now keeps its patients as
// another parameter's (search.ReferenceRowAliases: the types are listed
// here as they were, and stay so): version 1; any other, 2.
var IndexState = []string{
	`CREATE TABLE index_state (
		one INTEGER NOT NULL PRIMARY KEY CHECK (one = 1),
		version INTEGER NOT NULL
	)`,
	`INSERT INTO index_state (one, version) SELECT 1, CASE
		WHEN NOT EXISTS (SELECT 1 FROM current) THEN ` + strconv.Itoa(search.IndexVersion) + `
		WHEN EXISTS (SELECT 1 FROM idx_reference WHERE param = 'patient' AND type IN ('Condition', 'Encounter', 'Flag',
			'MedicationAdministration', 'MedicationRequest', 'Observation', 'Procedure', 'Provenance')) THEN 1
		ELSE 2 END`,
}

// IndexVersion implements store.Reindexer: the recorded version, or this
// build's for a database without resources (whose index is anyone's).
func (s *Store) IndexVersion(ctx context.Context) (int, error) {
	var v int
	err := s.db.Read(ctx, func(c Conn) error {
		return c.QueryRow(ctx, s.bind(`SELECT CASE WHEN EXISTS (SELECT 1 FROM current) THEN version ELSE ? END
			FROM index_state WHERE one = 1`), search.IndexVersion).Scan(&v)
	})
	if err != nil {
		return 0, fmt.Errorf("%s: index version: %w", s.d.Name, s.err(ctx, err))
	}
	return v, nil
}

// MarkIndexed implements store.Reindexer.
func (s *Store) MarkIndexed(ctx context.Context, version int) error {
	err := s.write(ctx, func(t *tx) error {
		_, err := t.c.Exec(t.ctx, s.bind(`UPDATE index_state SET version = ? WHERE one = 1`), version)
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: mark indexed: %w", s.d.Name, s.err(ctx, err))
	}
	return nil
}

// Tenants implements store.Reindexer.
func (s *Store) Tenants(ctx context.Context) ([]string, error) {
	var out []string
	err := s.db.Read(ctx, func(c Conn) error {
		rows, err := c.Query(ctx, `SELECT DISTINCT c.tenant FROM current c WHERE `+s.d.NotDeleted+` ORDER BY c.tenant`)
		if err != nil {
			return err
		}
		defer rows.Close()
		out = out[:0]
		for rows.Next() {
			var t string
			if err := rows.Scan(&t); err != nil {
				return err
			}
			out = append(out, t)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("%s: resource tenants: %w", s.d.Name, s.err(ctx, err))
	}
	return out, nil
}
