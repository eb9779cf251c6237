package bulk

import (
	"context"
	"fmt"
	"slices"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// A Patient or Group export holds the Provenances about its patients'
// data, not only those that target a Patient (R4's Provenance patient
// parameter): the gateway's record Provenance targets the resources a
// record wrote, and a later record of a patient, whose Patient matched
// and was not written again, targets that patient's Observations, Flag,
// … but not the Patient. So at those levels a Provenance is exported
// when one of its targets is a patient's (a Group's member's) Patient or
// a resource of the export's tenant about one (auditlog.PatientsIn of the
// target as it is now), and its download names those patients. A Group
// export then confines it as any Provenance (confiner: a SUBSETTED copy
// without the targets outside the Group).

// maxTargetCache bounds exporter.targets: past it the cache starts again.
const maxTargetCache = 100_000

// byTargets reports whether the export finds typ's resources by what
// their targets are about rather than by the compartment's parameter.
func (x *exporter) byTargets(typ string) bool {
	return typ == "Provenance" && x.req.Level != LevelSystem
}

// provenancePatients returns the patients the targets of the Provenance r
// are about: every patient at Patient level, the members at Group level.
func (x *exporter) provenancePatients(ctx context.Context, r *store.Resource) ([]string, error) {
	doc, err := engine.DecodeResource(r.Body)
	if err != nil {
		return nil, fmt.Errorf("Provenance/%s: %w", r.ID, err)
	}
	targets, _ := doc["target"].([]any)
	if x.targets == nil || len(x.targets) > maxTargetCache {
		x.targets = map[string][]string{}
	}
	var out, read []string
	for _, t := range targets {
		m, _ := t.(map[string]any)
		s, _ := m["reference"].(string)
		key, local := localRef(s)
		if !local {
			continue
		}
		typ, id, _ := splitRef(key)
		if typ == "Patient" {
			out = append(out, "Patient/"+id)
			continue
		}
		if _, ok := x.targets[typ+"/"+id]; !ok {
			read = append(read, typ+"/"+id)
			x.targets[typ+"/"+id] = nil
		}
	}
	if len(read) > 0 {
		rs, err := x.s.cfg.Store.ReadCurrent(ctx, read)
		if err != nil {
			return nil, err
		}
		for _, t := range rs {
			if t.Tenant == r.Tenant {
				x.targets[t.Type+"/"+t.ID] = auditlog.PatientsIn(t.Type, t.ID, t.Body)
			}
		}
	}
	for _, t := range targets {
		m, _ := t.(map[string]any)
		s, _ := m["reference"].(string)
		if key, local := localRef(s); local {
			typ, id, _ := splitRef(key)
			out = append(out, x.targets[typ+"/"+id]...)
		}
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if x.confiner != nil {
		out = x.confiner.onlyMembers(out)
	}
	return out, nil
}
