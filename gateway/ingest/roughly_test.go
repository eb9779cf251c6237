package ingest

import (
	"testing"
	"time"
)

// TestRoughly: a time just past the 5-minute tolerance does not read as
// "5 minutes ahead (clocks may differ by up to 5 minutes)" (p36 F3).
func TestRoughly(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{30 * time.Second, "1 minute"},
		{5 * time.Minute, "5 minutes"},
		{5*time.Minute + time.Second, "5 minutes 1 second"},
		{5*time.Minute + 59*time.Second + 900*time.Millisecond, "5 minutes 59 seconds"},
		{12*time.Minute + 30*time.Second, "12 minutes"},
		{13*time.Hour + 2*time.Minute, "13 hours 2 minutes"},
		{50 * time.Hour, "2 days"},
	} {
		if got := roughly(tc.d); got != tc.want {
			t.Errorf("roughly(%s) = %q, want %q", tc.d, got, tc.want)
		}
	}
}
