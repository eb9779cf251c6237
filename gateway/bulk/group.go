package bulk

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
)

// A Group, for a Group export, is a Group resource the client's tenant
// holds (a client posts it like any resource): its members are the
// Patients its member.entity references name ("Patient/<id>"), leaving out
// members marked inactive and entities that are not Patients. The export
// reads the membership once, at kick-off.

// groupMembers reads the Group (through the engine: the caller's tenant
// and scopes apply, and the kick-off's AuditEvent names it) and returns
// its Patients' ids, in order, once each.
func (s *Service) groupMembers(ctx context.Context, sc *auditlog.Scope, id string) ([]string, error) {
	r, err := s.cfg.Engine.Read(ctx, sc, "Group", id)
	if err != nil {
		return nil, err
	}
	var g struct {
		Member []struct {
			Entity struct {
				Reference string `json:"reference"`
			} `json:"entity"`
			Inactive bool `json:"inactive"`
		} `json:"member"`
	}
	if err := json.Unmarshal(r.Body, &g); err != nil {
		return nil, fmt.Errorf("stored Group/%s: %w", id, err)
	}
	var out []string
	seen := map[string]bool{}
	for _, m := range g.Member {
		pid, ok := strings.CutPrefix(m.Entity.Reference, "Patient/")
		if m.Inactive || !ok || !fhirwire.ValidID(pid) || seen[pid] {
			continue
		}
		seen[pid] = true
		out = append(out, pid)
	}
	if len(out) > s.cfg.MaxGroupMembers {
		return nil, outcome.New(outcome.TooLarge, "too-costly", "export-group-too-large",
			fmt.Sprintf("the Group has %d Patient members; a Group export takes at most %d", len(out), s.cfg.MaxGroupMembers))
	}
	return out, nil
}
