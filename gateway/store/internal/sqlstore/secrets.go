package sqlstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// DeploymentKeys is both stores' migration (SQLite's schema 16,
// PostgreSQL's 18) adding the deployment's secret keys, by name, hex:
// "delivery-id", the key of the delivery ids shown outside the store
// (store.Outbox.DeliveryIDKey), is made by PutDeliveryIDKey in the same
// migration.
var DeploymentKeys = []string{`CREATE TABLE deployment_keys (
	name TEXT NOT NULL PRIMARY KEY,
	secret TEXT NOT NULL
)`}

// deliveryIDKey is the name of the delivery ids' key.
const deliveryIDKey = "delivery-id"

// PutDeliveryIDKey is DeploymentKeys' After: it makes the deployment's
// delivery id key, 32 random bytes. Migrations run once per database
// (serialised against other processes'), so every process reads the same.
func PutDeliveryIDKey(ctx context.Context, c Conn) error {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("delivery id key: %w", err)
	}
	// Both values are literals (a name and hex digits): no placeholder,
	// whose spelling differs between the dialects.
	_, err := c.Exec(ctx, `INSERT INTO deployment_keys (name, secret) VALUES ('`+deliveryIDKey+`', '`+hex.EncodeToString(key)+`')`)
	return err
}

// DeliveryIDKey implements store.Outbox.
func (s *Store) DeliveryIDKey(ctx context.Context) ([]byte, error) {
	var secret string
	err := s.db.Read(ctx, func(c Conn) error {
		return c.QueryRow(ctx, s.bind(`SELECT secret FROM deployment_keys WHERE name = ?`), deliveryIDKey).Scan(&secret)
	})
	if errNoRows(err) {
		return nil, fmt.Errorf("%s: delivery id key: %w", s.d.Name, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: delivery id key: %w", s.d.Name, s.err(ctx, err))
	}
	key, err := hex.DecodeString(secret)
	if err != nil || len(key) < 16 {
		return nil, fmt.Errorf("%s: delivery id key: stored key is malformed", s.d.Name)
	}
	return key, nil
}
