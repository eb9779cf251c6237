package sqlstore

import (
	"fmt"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// The registered clients as last recorded (store.ClientRecord): one row
// per client id in client_registrations, changed only by a compare and
// swap on its digest, so that gateways starting together on one database
// record each change once: the second one's swap finds the first one's
// row (it waits for the first one's transaction where that holds the row)
// and fails with store.ErrConflict, and its retry finds nothing to do.
const (
	sqlClientRecords      = `SELECT id, digest, registration, recorded FROM client_registrations ORDER BY id`
	sqlClientRecordInsert = `INSERT INTO client_registrations (id, digest, registration, recorded) VALUES (?, ?, ?, ?)
		ON CONFLICT (id) DO NOTHING`
	sqlClientRecordUpdate = `UPDATE client_registrations SET digest = ?, registration = ?, recorded = ? WHERE id = ? AND digest = ?`
	sqlClientRecordDelete = `DELETE FROM client_registrations WHERE id = ? AND digest = ?`
)

// ClientRecords implements store.Tx.
func (t *tx) ClientRecords() ([]store.ClientRecord, error) {
	s := t.s
	rows, err := t.c.Query(t.ctx, s.bind(sqlClientRecords))
	if err != nil {
		return nil, fmt.Errorf("%s: ClientRecords: %w", s.d.Name, s.err(t.ctx, err))
	}
	defer rows.Close()
	var out []store.ClientRecord
	for rows.Next() {
		var r store.ClientRecord
		var reg string
		var recorded int64
		if err := rows.Scan(&r.ID, &r.Digest, &reg, &recorded); err != nil {
			return nil, fmt.Errorf("%s: ClientRecords: %w", s.d.Name, s.err(t.ctx, err))
		}
		r.Registration, r.Recorded = []byte(reg), time.UnixMilli(recorded).UTC()
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: ClientRecords: %w", s.d.Name, s.err(t.ctx, err))
	}
	return out, nil
}

// SwapClientRecord implements store.Tx: an insert that does nothing on
// a row of id, an update or a delete of the row of id and digest was;
// changing no row is store.ErrConflict.
func (t *tx) SwapClientRecord(id, was string, rec *store.ClientRecord) error {
	s := t.s
	if id == "" || rec != nil && (rec.ID != id || rec.Digest == "") {
		return fmt.Errorf("%s: SwapClientRecord: an id, and a record of that id with a digest, are required", s.d.Name)
	}
	var n int64
	var err error
	switch {
	case rec == nil && was == "":
		return nil // nothing recorded, nothing to record
	case rec == nil:
		n, err = t.c.Exec(t.ctx, s.bind(sqlClientRecordDelete), s.text(id), s.text(was))
	default:
		if was == "" {
			n, err = t.c.Exec(t.ctx, s.bind(sqlClientRecordInsert), s.text(id), s.text(rec.Digest), s.text(string(rec.Registration)),
				rec.Recorded.UnixMilli())
		} else {
			n, err = t.c.Exec(t.ctx, s.bind(sqlClientRecordUpdate), s.text(rec.Digest), s.text(string(rec.Registration)),
				rec.Recorded.UnixMilli(), s.text(id), s.text(was))
		}
	}
	if err != nil {
		return fmt.Errorf("%s: SwapClientRecord %s: %w", s.d.Name, id, s.err(t.ctx, err))
	}
	if n != 1 {
		return fmt.Errorf("%w: the record of client %s changed meanwhile", store.ErrConflict, id)
	}
	return nil
}
