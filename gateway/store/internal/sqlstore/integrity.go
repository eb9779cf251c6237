package sqlstore

import (
	"context"
	"fmt"
)

// CheckIntegrity checks the invariants that tie the tables together and
// that no foreign key enforces (PostgreSQL's schema 9 dropped them: each
// was a trigger running a query, and locking the referenced row, for every
// inserted row; SQLite's write connection does not enforce them, each was
// a lookup for every inserted row on its single write lane): every
// current row names a stored version of its own resource, every index row
// belongs to a current, non-deleted resource, every delivery attempt and
// order key to an outbox item, every outbox item has its order keys, live
// exactly while it is pending or in flight. It reads the whole database: the backends' tests run
// it after every test of the shared suite, on SQLite as on PostgreSQL. The
// error names the first offending row's table and key (test data, no
// PHI).
func (s *Store) CheckIntegrity(ctx context.Context) error {
	checks := []struct{ what, query string }{{
		"a current row without its version",
		`SELECT c.type, c.id FROM current c
			WHERE NOT EXISTS (SELECT 1 FROM resources r WHERE r.type = c.type AND r.id = c.id AND r.version = c.version)`,
	}}
	for i := range indexTables {
		t := indexTables[i].name
		checks = append(checks, struct{ what, query string }{
			"a row of " + t + " without a current, non-deleted resource",
			`SELECT x.type, x.id FROM ` + t + ` x
				WHERE NOT EXISTS (SELECT 1 FROM current c WHERE c.type = x.type AND c.id = x.id AND ` + s.d.NotDeleted + `)`,
		})
	}
	checks = append(checks, struct{ what, query string }{
		"a delivery attempt without its outbox item",
		`SELECT CAST(a.item_id AS TEXT), CAST(a.n AS TEXT) FROM delivery_attempts a
			WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE o.id = a.item_id)`,
	}, struct{ what, query string }{
		// outbox_keys (outboxkeys.go): every item has its keys, every key
		// its item, and a key is live exactly while its item is undone.
		"an order key without its outbox item",
		`SELECT CAST(k.item_id AS TEXT), CAST(k.live AS TEXT) FROM outbox_keys k
			WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE o.id = k.item_id)`,
	}, struct{ what, query string }{
		"an outbox item without its order keys",
		`SELECT CAST(o.id AS TEXT), o.status FROM outbox o
			WHERE NOT EXISTS (SELECT 1 FROM outbox_keys k WHERE k.item_id = o.id)`,
	}, struct{ what, query string }{
		"an order key whose live flag disagrees with its item's status",
		`SELECT CAST(o.id AS TEXT), o.status FROM outbox_keys k JOIN outbox o ON o.id = k.item_id
			WHERE k.live <> CASE WHEN o.status IN ('pending', 'inflight') THEN 1 ELSE 0 END`,
	})
	return s.db.Read(ctx, func(c Conn) error {
		for _, ch := range checks {
			var typ, id string
			err := c.QueryRow(ctx, ch.query+` LIMIT 1`).Scan(&typ, &id)
			switch {
			case errNoRows(err):
			case err != nil:
				return fmt.Errorf("%s: integrity: %w", s.d.Name, err)
			default:
				return fmt.Errorf("%s: integrity: %s: %s/%s", s.d.Name, ch.what, typ, id)
			}
		}
		return nil
	})
}
