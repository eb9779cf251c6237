package bulk

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// A Group, for a Group export, is a Group resource the client's tenant
// holds (a client posts it like any resource): its members are the
// Patients its member.entity references name ("Patient/<id>", also
// versioned, "Patient/<id>/_history/<v>": the member is the Patient),
// leaving out members marked inactive, members whose member.period has
// ended before the kick-off or starts after it (R4: "the period over which
// the patient was considered a member of the group"), and entities that
// are not Patients. The export reads the membership once, at kick-off.

// groupMembers reads the Group (through the engine: the caller's tenant
// and scopes apply, and the kick-off's AuditEvent names it) and returns
// its Patients' ids, in order, once each, and the Group's tenant.
func (s *Service) groupMembers(ctx context.Context, sc *auditlog.Scope, id string) ([]string, string, error) {
	r, err := s.cfg.Engine.Read(ctx, sc, "Group", id)
	if err != nil {
		return nil, "", err
	}
	var g struct {
		Member []struct {
			Entity struct {
				Reference string `json:"reference"`
			} `json:"entity"`
			Inactive bool `json:"inactive"`
			Period   struct {
				Start string `json:"start"`
				End   string `json:"end"`
			} `json:"period"`
		} `json:"member"`
	}
	if err := json.Unmarshal(r.Body, &g); err != nil {
		return nil, "", fmt.Errorf("stored Group/%s: %w", id, err)
	}
	var out []string
	seen := map[string]bool{}
	now := s.cfg.Now()
	for _, m := range g.Member {
		pid, ok := strings.CutPrefix(m.Entity.Reference, "Patient/")
		if before, _, versioned := strings.Cut(pid, "/_history/"); versioned {
			pid = before
		}
		if m.Inactive || !ok || !fhirwire.ValidID(pid) || seen[pid] || !memberAt(m.Period.Start, m.Period.End, now) {
			continue
		}
		seen[pid] = true
		out = append(out, pid)
	}
	if len(out) > s.cfg.MaxGroupMembers {
		return nil, "", outcome.New(outcome.TooLarge, "too-costly", "export-group-too-large",
			fmt.Sprintf("the Group has %d Patient members; a Group export takes at most %d", len(out), s.cfg.MaxGroupMembers))
	}
	return out, r.Tenant, nil
}

// memberAt reports whether a member.period (FHIR dateTimes, possibly
// partial; "" open) includes t, each bound covering its precision (an end
// of "2001" lasts to the year's last instant), as a date search compares
// them (search.DateRange). A malformed bound, which R4 validation
// refuses, does not limit the membership.
func memberAt(start, end string, t time.Time) bool {
	if lo, _, ok := search.DateRange(start); ok && t.Before(lo) {
		return false
	}
	if _, hi, ok := search.DateRange(end); ok && t.After(hi) {
		return false
	}
	return true
}
