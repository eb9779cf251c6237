package postgres

import (
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/storetest"
)

// TestNotRollingSaysWhatOlderGatewaysDo: storetest.NotRollingSaysWhatOlderDo
// on this store's migrations.
func TestNotRollingSaysWhatOlderGatewaysDo(t *testing.T) {
	storetest.NotRollingSaysWhatOlderDo(t, migrations)
}
