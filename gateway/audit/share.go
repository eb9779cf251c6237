package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// shareLead and shareOfRequest are the wording of a share's description,
// made by ShareDescription and read back by SharedWith and IsShare: one
// place, so that the writer and the readers cannot drift apart.
const (
	shareLead      = "the share of "
	shareOfRequest = " of an all-tenant client's request"
)

// ShareOf is how the description of a tenant's share of an all-tenant
// client's request names that tenant ("the share of tenant "clinic-a"",
// "the share of the default tenant"). A share's body names the request's
// tenant (source.site "*"), not the share's: the description is where its
// hashed body says which tenant it was made for.
func ShareOf(tenant string) string {
	if tenant == "" {
		return shareLead + "the default tenant"
	}
	return fmt.Sprintf(shareLead+"tenant %q", tenant)
}

// ShareDescription is how the description of tenant's share of an
// all-tenant client's request begins (after any failure rules); the
// share's writer follows it with what the share names.
func ShareDescription(tenant string) string {
	return ShareOf(tenant) + shareOfRequest
}

// SharedWith reports whether body (an AuditEvent as Render makes it) is
// the share of tenant of an all-tenant client's request: its description
// says so (ShareDescription). The audit chain walk uses it to check the
// tenant a share is stored under against its hashed body.
func SharedWith(body []byte, tenant string) bool {
	enc, err := json.Marshal(ShareDescription(tenant))
	if err != nil {
		return false
	}
	return bytes.Contains(body, enc[1:len(enc)-1])
}

// IsShare reports whether an AuditEvent whose description (outcomeDesc)
// is description is a tenant's share of an all-tenant client's request,
// not the request's whole record (ShareDescription; both name the
// client's tenant, "*", as their source.site).
func IsShare(description string) bool {
	i := strings.Index(description, shareLead)
	return i >= 0 && strings.Contains(description[i:], shareOfRequest)
}
