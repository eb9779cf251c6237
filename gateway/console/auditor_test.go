package console

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
)

// TestAuditSearchLogin: the form's interactions login and logout find the
// sign-ins and sign-outs, which are stored with DICOM subtypes (110122
// Login, 110123 Logout), and the export names them as the form does, not
// by the DICOM code (probe p39 F1).
func TestAuditSearchLogin(t *testing.T) {
	f := newFixture(t, nil)
	for _, in := range []string{"login", "login", "logout"} {
		sc := auditlog.NewScope(in, &auth.Principal{ClientID: "person:auditor@clinic.example"})
		if err := f.app.Audit.Append(sc, http.StatusOK); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		interaction, want string
	}{
		{"login", "Requests 1 to 2 of 2,"},
		{"logout", "Requests 1 to 1 of 1,"},
	} {
		t.Run(tc.interaction, func(t *testing.T) {
			_, page, _ := f.get(t, "/console/audit")
			token := csrf(t, page)
			_, _, h := f.post(t, "/console/audit", url.Values{"csrf": {token}, "interaction": {tc.interaction}})
			loc := h.Get("Location")
			code, body, _ := f.get(t, loc)
			if code != http.StatusOK || !strings.Contains(body, tc.want) || !strings.Contains(body, "<td>"+tc.interaction+" (") {
				t.Fatalf("search by interaction %s = %d, want %q:\n%.3000s", tc.interaction, code, tc.want, body)
			}
			code, csvBody, _ := f.post(t, "/console/audit/export", url.Values{"csrf": {token}, "q": {strings.TrimPrefix(loc, "/console/audit?q=")},
				"format": {"csv"}})
			if code != http.StatusOK || !strings.Contains(csvBody, ","+tc.interaction+",") || strings.Contains(csvBody, ",1101") {
				t.Errorf("CSV export of interaction %s = %d, want it named so:\n%s", tc.interaction, code, csvBody)
			}
		})
	}
}
