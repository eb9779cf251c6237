package storetest

import (
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/internal/sqlstore"
)

// NotRollingSaysWhatOlderDo checks a store's migrations: every
// stop-the-world migration says what a gateway of an older release left
// running would do wrong (Migration.Older), and the migrations applied
// carry it to the start log's WARN (p44 F1).
func NotRollingSaysWhatOlderDo(t *testing.T, migrations []sqlstore.Migration) {
	t.Helper()
	last := migrations[len(migrations)-1].Version
	applied := sqlstore.Applied(migrations, 1, last)
	for _, m := range migrations {
		if !m.NotRolling {
			continue
		}
		if m.Older == "" {
			t.Errorf("migration %d is NotRolling without Older", m.Version)
		}
		found := false
		for _, a := range applied {
			if a.Version == m.Version {
				found = a.NotRolling && a.Older == m.Older
			}
		}
		if !found {
			t.Errorf("Applied does not mark migration %d stop-the-world with what older releases do", m.Version)
		}
	}
}
