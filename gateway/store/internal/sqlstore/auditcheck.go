package sqlstore

import (
	"context"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// What the chain walk checks besides the hashes (audit.ChainEntry.Faults).
//
// The chain hashes version 1 of each AuditEvent, but reads and searches
// serve what current points at, and searches find AuditEvents by their
// index rows: neither is in the hash. So each page of the walk reads, in
// one snapshot, how the store would serve each chained AuditEvent (its
// current row, its versions, its index rows) and names what differs from
// the version the chain holds. AuditEvents are never updated nor deleted
// (the engine refuses it: audit-read-only), so anything but "current is
// version 1, not deleted, the only version, indexed as its body gives" was
// written behind the gateway's back.

// sqlAuditPage reads the chain entries after a seq, with the stored
// version 1 of each AuditEvent (r), its current row (c) and how many
// versions it has. %s are the dialect's "not deleted" conditions of r and c.
const sqlAuditPage = `SELECT a.seq, a.id, a.hash, r.body,
	COALESCE(r.last_updated, 0), COALESCE(r.tenant, ''), CASE WHEN r.id IS NULL OR %s THEN 0 ELSE 1 END,
	COALESCE(c.version, 0), COALESCE(c.last_updated, 0), COALESCE(c.tenant, ''), CASE WHEN c.id IS NULL OR %s THEN 0 ELSE 1 END,
	(SELECT COUNT(*) FROM resources v WHERE v.type = 'AuditEvent' AND v.id = a.id)
	FROM audit_chain a
	LEFT JOIN resources r ON r.type = 'AuditEvent' AND r.id = a.id AND r.version = 1
	LEFT JOIN current c ON c.type = 'AuditEvent' AND c.id = a.id
	WHERE a.seq > ? ORDER BY a.seq LIMIT ?`

// served is how the store serves a chained AuditEvent: its version 1 row
// (v*: lastUpdated, tenant, deleted; vBody false when it is missing) and
// its current row (cur 0: none).
type served struct {
	vBody             bool
	vLU               int64
	vTenant           string
	vDeleted          int64
	cur, curLU        int64
	curTenant         string
	curDeleted        int64
	versions          int64
	lastUpdated       int64  // the body's meta.lastUpdated (ms), when hasLU
	site              string // the body's tenant (source.site; "" the default tenant)
	share             bool   // site is every tenant's, and the body is vTenant's share (audit.SharedWith)
	hasLU, checkIndex bool
	indexed           bool // the audit indexer has reached it
	rows              indexRows
}

// auditPage reads the chain entries after seq after, with their bodies
// and the faults of how the store serves them, in one snapshot (c is a
// Snapshot's).
func (s *Store) auditPage(ctx context.Context, c Conn, after int64) ([]audit.ChainEntry, error) {
	// The index rows are this build's only when the index is (else
	// reindex has yet to rewrite them: they are not compared), and the
	// audit indexer has written rows up to indexedTo only.
	var version int
	var indexedTo int64
	if err := c.QueryRow(ctx, `SELECT (SELECT version FROM index_state WHERE one = 1), (SELECT seq FROM audit_index_head WHERE one = 1)`).
		Scan(&version, &indexedTo); err != nil {
		return nil, err
	}
	checkIndex := version == search.IndexVersion
	q := fmt.Sprintf(sqlAuditPage, strings.Replace(s.d.NotDeleted, "c.", "r.", 1), s.d.NotDeleted)
	rows, err := c.Query(ctx, s.bind(q), after, auditPage)
	if err != nil {
		return nil, err
	}
	var page []audit.ChainEntry
	var state []*served
	for rows.Next() {
		var e audit.ChainEntry
		sv := &served{checkIndex: checkIndex}
		if err := rows.Scan(&e.Seq, &e.ID, &e.Hash, &e.Body, &sv.vLU, &sv.vTenant, &sv.vDeleted,
			&sv.cur, &sv.curLU, &sv.curTenant, &sv.curDeleted, &sv.versions); err != nil { // NULL: nil Body
			rows.Close()
			return nil, err
		}
		sv.vBody = e.Body != nil
		e.Body = auditJSON(e.Body)
		sv.indexed = e.Seq <= indexedTo
		page = append(page, e)
		state = append(state, sv)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// The bodies are decoded while the index rows are read.
	var extracting sync.WaitGroup
	extracting.Go(func() { s.extractPage(page, state) })
	defer extracting.Wait()
	var batch []reindexed
	for i, e := range page {
		if state[i].vBody && checkIndex {
			batch = append(batch, reindexed{key: resKey{"AuditEvent", e.ID}})
		}
	}
	var stored map[resKey]*indexRows
	if len(batch) > 0 {
		if stored, err = s.storedRows(ctx, c, batch); err != nil {
			return nil, err
		}
	}
	extracting.Wait()
	for i := range page {
		page[i].Faults = state[i].faults(stored[resKey{"AuditEvent", page[i].ID}])
	}
	return page, nil
}

// extractPage sets, for each entry of page whose version 1 is stored, its
// body's lastUpdated and, when its index rows are compared and the audit
// indexer has reached it, the index rows its body gives (as the indexer
// extracts them), on every core: decoding the bodies is most of a page's
// cost.
func (s *Store) extractPage(page []audit.ChainEntry, state []*served) {
	workers := min(runtime.GOMAXPROCS(0), len(page)/64+1)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(page); i += workers {
				sv := state[i]
				if !sv.vBody {
					continue // the hash no longer matches: the verifier reports it
				}
				entries := extractAudit(page[i].Body)
				for _, en := range entries {
					switch {
					case en.Param == "_lastUpdated" && en.Type == search.TypeDate:
						sv.lastUpdated, sv.hasLU = storedMS(en.Low), true
					case en.Param == "site" && en.Type == search.TypeToken:
						sv.site = en.Code
					}
				}
				if sv.site == search.AllTenants && sv.vTenant != search.AllTenantsAudit {
					sv.share = audit.SharedWith(page[i].Body, sv.vTenant)
				}
				if sv.checkIndex && sv.indexed && s.entryRows(&sv.rows, entries) != nil {
					sv.rows = indexRows{} // the indexer could not have indexed it either
				}
			}
		})
	}
	wg.Wait()
}

// ownTenant reports whether sv is stored under the tenant its body names:
// a tenant's request's under that tenant (source.site), an all-tenant
// client's request's whole record under search.AllTenantsAudit, and each
// tenant's share of it under that tenant (its description says whose).
func (sv *served) ownTenant() bool {
	if sv.site == search.AllTenants {
		return sv.vTenant == search.AllTenantsAudit || sv.share
	}
	return sv.vTenant == sv.site
}

// faults names what is wrong with how sv is served, as a list of short
// PHI-free sentences (none: nothing). stored are its index rows (nil when
// they were not read).
func (sv *served) faults(stored *indexRows) []string {
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	switch {
	case sv.cur == 0:
		add("its current row is missing: reads answer 404 and searches do not find it")
	case sv.cur != 1:
		add("its current row names version %d, not 1: reads and searches serve a body the chain does not hold", sv.cur)
	}
	if sv.curDeleted != 0 {
		add("its current row marks it deleted: searches do not find it")
	}
	if sv.vDeleted != 0 {
		add("its version 1 is marked deleted: reads answer 410")
	}
	other := sv.versions
	if sv.vBody {
		other--
	}
	if other > 0 {
		add("%d other version(s) stored besides version 1: its history serves bodies the chain does not hold", other)
	}
	if sv.vBody && !sv.ownTenant() {
		// The tenant is a column the chain does not hash, but the body
		// names it, and the body is hashed.
		add("it is stored under another tenant than its body names: that tenant's clients read and search it, its own do not")
	}
	if sv.vBody && sv.cur != 0 && sv.curTenant != sv.vTenant {
		add("its current row's tenant differs from its version's: searches show it in another tenant than reads")
	}
	switch {
	case sv.vBody && sv.hasLU && (sv.vLU != sv.lastUpdated || (sv.cur != 0 && sv.curLU != sv.lastUpdated)):
		add("its stored lastUpdated differs from its body's: _lastUpdated searches and histories misplace it")
	case sv.vBody && !sv.hasLU && sv.cur != 0 && sv.curLU != sv.vLU:
		add("its current row's lastUpdated differs from its version's: _lastUpdated searches misplace it")
	}
	if stored != nil && sv.checkIndex {
		if d := rowsDiff(&sv.rows, stored); d != "" {
			if sv.indexed {
				add("its search index rows differ from those its body gives (%s): searches find it by other values", d)
			} else {
				add("it has search index rows although the audit indexer has not indexed it yet (%s)", d)
			}
		}
	}
	return out
}

// rowsDiff describes how the index rows got differ from want: by table and
// search parameter, how many are missing and how many are extra ("" when
// they are the same rows, in any order). Only parameter names are named,
// never values.
func rowsDiff(want, got *indexRows) string {
	var parts []string
	for tbl := range indexTables {
		if sameRows(want[tbl], got[tbl]) {
			continue
		}
		// Each row by its key (rowKeys), with its parameter (column 0).
		count := func(rows [][]any) (map[string]int, map[string]string) {
			n, param := map[string]int{}, map[string]string{}
			for _, row := range rows {
				k := rowKeys([][]any{row})[0]
				n[k]++
				param[k] = paramName(row[0])
			}
			return n, param
		}
		w, pw := count(want[tbl])
		g, pg := count(got[tbl])
		missing, extra := map[string]int{}, map[string]int{}
		for k, n := range w {
			if d := n - g[k]; d > 0 {
				missing[pw[k]] += d
			}
		}
		for k, n := range g {
			if d := n - w[k]; d > 0 {
				extra[pg[k]] += d
			}
		}
		for _, p := range slices.Sorted(maps.Keys(missing)) {
			parts = append(parts, fmt.Sprintf("%s %s: %d missing", indexTables[tbl].name, p, missing[p]))
		}
		for _, p := range slices.Sorted(maps.Keys(extra)) {
			parts = append(parts, fmt.Sprintf("%s %s: %d extra", indexTables[tbl].name, p, extra[p]))
		}
	}
	return strings.Join(parts, ", ")
}

// paramName is the search parameter of an AuditEvent's index row, if it
// is one AuditEvents have (a row written behind the store's back may name
// anything: it is not repeated).
func paramName(v any) string {
	p, _ := v.(string)
	if _, ok := search.Lookup("AuditEvent", p); ok {
		return p
	}
	return "(a parameter AuditEvents do not have)"
}

// sqlUnchainedAudits are the AuditEvents stored (a version or a current
// row) that the chain does not hold, in one statement (one snapshot: a
// committed AuditEvent is in the chain in the same transaction).
const sqlUnchainedAudits = `SELECT r.id FROM resources r WHERE r.type = 'AuditEvent'
		AND NOT EXISTS (SELECT 1 FROM audit_chain a WHERE a.id = r.id)
	UNION
	SELECT c.id FROM current c WHERE c.type = 'AuditEvent'
		AND NOT EXISTS (SELECT 1 FROM audit_chain a WHERE a.id = c.id)
	ORDER BY 1`

// UnchainedAudits implements store.Store.
func (s *Store) UnchainedAudits(ctx context.Context, limit int) ([]string, int, error) {
	var ids []string
	var n int
	err := s.db.Read(ctx, func(c Conn) error {
		ids, n = ids[:0], 0
		rows, err := c.Query(ctx, sqlUnchainedAudits)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			if n++; n <= limit {
				ids = append(ids, id)
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, 0, fmt.Errorf("%s: unchained AuditEvents: %w", s.d.Name, s.err(ctx, err))
	}
	return ids, n, nil
}
