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
// partial: "2001", "2001-01", "2001-01-01"; "" open) includes t: a
// partial end lasts to the end of its year, month or day, a partial start
// begins with it. A time without a zone is taken as UTC.
func memberAt(start, end string, t time.Time) bool {
	if s, _, ok := parseDateTime(start); ok && t.Before(s) {
		return false
	}
	if _, e, ok := parseDateTime(end); ok && !t.Before(e) {
		return false
	}
	return true
}

// parseDateTime parses a FHIR dateTime into the interval it names: its
// first instant and the first instant after it. ok is false for "" or a
// malformed value (which then does not limit the membership).
func parseDateTime(v string) (from, to time.Time, ok bool) {
	for _, l := range []struct {
		layout string
		next   func(time.Time) time.Time
	}{
		{time.RFC3339Nano, func(t time.Time) time.Time { return t.Add(time.Nanosecond) }},
		{"2006-01-02T15:04:05", func(t time.Time) time.Time { return t.Add(time.Second) }},
		{time.DateOnly, func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }},
		{"2006-01", func(t time.Time) time.Time { return t.AddDate(0, 1, 0) }},
		{"2006", func(t time.Time) time.Time { return t.AddDate(1, 0, 0) }},
	} {
		if t, err := time.Parse(l.layout, v); err == nil {
			return t, l.next(t), true
		}
	}
	return time.Time{}, time.Time{}, false
}
