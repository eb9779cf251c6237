package delivery

import (
	"bytes"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestAnswerCutOffOrTooLarge: an answer cut off after its status line
// records the status the EHR sent and says the answer was cut off (p23
// F5); an answer over the gateway's limit says so, not "not JSON" (F6).
// Both are retried.
func TestAnswerCutOffOrTooLarge(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer func(w http.ResponseWriter)
		want   string
	}{
		{"cut-off", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/fhir+json")
			w.Header().Set("Content-Length", "1000")
			w.WriteHeader(http.StatusOK)
			w.Write([]byte(`{"resourceType":"Bundle",`)) // then the connection closes
		}, "http 200, then the answer was cut off"},
		{"too-large", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/fhir+json")
			w.Header().Set("Content-Length", strconv.Itoa(maxResponse+1))
			w.WriteHeader(http.StatusOK)
			w.Write(bytes.Repeat([]byte(" "), maxResponse+1))
		}, "http 200, the answer exceeded the gateway's 16 MiB limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ehr := newStubEHR(t)
			ehr.intercept = func(n int, w http.ResponseWriter, r *http.Request, body []byte) bool {
				tc.answer(w)
				return true
			}
			// A long timeout: reading 16 MiB under -race on a loaded host
			// took over testDest's 5 s (a timeout is another outcome).
			d := testDest("ehr", ehr.base())
			d.Timeout = 2 * time.Minute
			h := newHarness(t, []Destination{d}, func(o *WorkerOptions) { o.MaxAttempts = 1 })
			_, evs := h.sendOne(sessionBundle("P-1", "S-1", "completed", false))
			wantAttempt(t, evs[0], 1, store.StatusDead, 200, tc.want)
		})
	}
}
