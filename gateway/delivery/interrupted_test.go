package delivery

import (
	"strings"
	"testing"
)

// TestInterruptedErrorPrefix: the console tells an interrupted attempt by
// its error's "interrupted:" prefix (gateway/console attemptFate: the EHR
// may have received the record); the stored error must keep it.
func TestInterruptedErrorPrefix(t *testing.T) {
	if !strings.HasPrefix(interruptedError, "interrupted:") {
		t.Errorf("interruptedError %q does not begin with \"interrupted:\"", interruptedError)
	}
}
