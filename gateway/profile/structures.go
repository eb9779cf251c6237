package profile

import (
	"fmt"
	"slices"

	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// Publisher names the publisher of the gateway's conformance resources.
const Publisher = "ketamine-gateway project"

// Version is the version of the gateway's profiles, ValueSets and
// extensions: the mapping version, since they describe its output.
const Version = mapping.Version

// buildProfile derives a profile's StructureDefinition: its differential
// (the table's elements, in snapshot order) and its snapshot (the R4
// resource's with the differential applied).
func buildProfile(lib *library, p Profile) (*StructureDefinition, error) {
	base := lib.typeSD(p.Type)
	if base == nil {
		return nil, fmt.Errorf("profile %s: no R4 definition of %s", p.Name, p.Type)
	}
	sd := newSD(p.Name, p.Title, p.Description, base)
	sd.Kind = "resource"
	if err := derive(lib, sd, base, p.Elements); err != nil {
		return nil, fmt.Errorf("profile %s: %w", p.Name, err)
	}
	return sd, nil
}

// buildExtension derives an extension's StructureDefinition from R4's
// Extension.
func buildExtension(lib *library, x extensionDef) (*StructureDefinition, error) {
	base := lib.typeSD("Extension")
	sd := newSD(x.name, x.title, x.description, base)
	sd.Kind, sd.Context = "complex-type", x.contexts()
	if err := derive(lib, sd, base, x.differential()); err != nil {
		return nil, fmt.Errorf("extension %s: %w", x.name, err)
	}
	return sd, nil
}

func newSD(name, title, description string, base *StructureDefinition) *StructureDefinition {
	return &StructureDefinition{ResourceType: "StructureDefinition", ID: name, URL: Prefix + name, Version: Version,
		Name: pascal(name), Title: title, Status: "active", Experimental: ptr(false), Publisher: Publisher,
		Description: description, FHIRVersion: "4.0.1", Type: base.Type, BaseDefinition: base.URL, Derivation: "constraint"}
}

// derive fills sd's differential and snapshot from diff over base.
func derive(lib *library, sd, base *StructureDefinition, diff []*ElementDefinition) error {
	var els []*ElementDefinition
	for _, d := range diff {
		d = d.clone()
		d.Path = pathOf(d.ID)
		if _, _, slice := splitID(d.ID); slice != "" {
			d.SliceName = slice
		}
		els = append(els, d)
	}
	snap, err := deriveSnapshot(lib, base, els, sd.URL)
	if err != nil {
		return err
	}
	pos := func(id string) int {
		return slices.IndexFunc(snap, func(e *ElementDefinition) bool { return e.ID == id })
	}
	slices.SortStableFunc(els, func(a, b *ElementDefinition) int { return pos(a.ID) - pos(b.ID) })
	// Two table rows for one element are one differential element.
	merged := els[:0]
	for _, d := range els {
		if n := len(merged); n > 0 && merged[n-1].ID == d.ID {
			if err := constrain(merged[n-1], d, ""); err != nil {
				return err
			}
			continue
		}
		merged = append(merged, d)
	}
	for _, d := range merged {
		for i := range d.Constraint {
			d.Constraint[i].Source = sd.URL
		}
	}
	sd.Differential = &Elements{Element: merged}
	sd.Snapshot = &Elements{Element: snap}
	return nil
}
