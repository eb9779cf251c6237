package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// The gateways' records of themselves (store.Instances): one row per
// instance name, its fingerprints as a JSON object, its heartbeat in
// milliseconds. Each is written on its own (autocommit), outside the
// write queue: a heartbeat is never held up behind a burst of writes.

// PutInstance implements store.Instances.
func (s *Store) PutInstance(ctx context.Context, in store.Instance) error {
	fp, err := json.Marshal(in.Fingerprints)
	if err != nil {
		return fmt.Errorf("%s: put instance: %w", s.d.Name, err)
	}
	return s.db.Autocommit(ctx, func(c Conn) error {
		_, err := c.Exec(ctx, s.bind(`INSERT INTO instances (name, fingerprints, seen) VALUES (?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET fingerprints = excluded.fingerprints, seen = excluded.seen`),
			s.text(in.Name), string(fp), in.Seen.UnixMilli())
		if err != nil {
			return fmt.Errorf("%s: put instance: %w", s.d.Name, s.err(ctx, err))
		}
		_, err = c.Exec(ctx, s.bind(`DELETE FROM instances WHERE seen < ?`), in.Seen.Add(-store.InstanceRetention).UnixMilli())
		if err != nil {
			return fmt.Errorf("%s: put instance: %w", s.d.Name, s.err(ctx, err))
		}
		return nil
	})
}

// DeleteInstance implements store.Instances.
func (s *Store) DeleteInstance(ctx context.Context, name string) error {
	return s.db.Autocommit(ctx, func(c Conn) error {
		if _, err := c.Exec(ctx, s.bind(`DELETE FROM instances WHERE name = ?`), s.text(name)); err != nil {
			return fmt.Errorf("%s: delete instance: %w", s.d.Name, s.err(ctx, err))
		}
		return nil
	})
}

// ListInstances implements store.Instances.
func (s *Store) ListInstances(ctx context.Context, since time.Time) ([]store.Instance, error) {
	var out []store.Instance
	err := s.db.Read(ctx, func(c Conn) error {
		out = nil
		rows, err := c.Query(ctx, s.bind(`SELECT name, fingerprints, seen FROM instances WHERE seen >= ? ORDER BY name`), since.UnixMilli())
		if err != nil {
			return fmt.Errorf("%s: list instances: %w", s.d.Name, s.err(ctx, err))
		}
		defer rows.Close()
		for rows.Next() {
			var in store.Instance
			var fp string
			var seen int64
			if err := rows.Scan(&in.Name, &fp, &seen); err != nil {
				return fmt.Errorf("%s: list instances: %w", s.d.Name, s.err(ctx, err))
			}
			if err := json.Unmarshal([]byte(fp), &in.Fingerprints); err != nil {
				return fmt.Errorf("%s: list instances: instance fingerprints: %w", s.d.Name, err)
			}
			in.Seen = time.UnixMilli(seen).UTC()
			out = append(out, in)
		}
		return rows.Err()
	})
	return out, err
}
