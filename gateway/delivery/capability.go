package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// Capabilities is what a destination's CapabilityStatement says about
// delivery.
//
// Transaction and Batch come from the rest (mode server) interaction
// codes, Resources from its resource entries. No size hint is read: R4
// defines none in the CapabilityStatement, so the entry limit is
// Destination.MaxEntries, and a 413 Payload Too Large lowers the mode for
// that attempt (transaction -> batch -> single).
type Capabilities struct {
	// FHIRVersion is the statement's fhirVersion (e.g. 4.0.1).
	FHIRVersion string
	// Transaction and Batch report the system interactions.
	Transaction, Batch bool
	// Software is the server's software name and version, if given.
	Software string
	// Resources are the resource types the statement lists (rest mode
	// server, resource.type) with the interaction codes it lists for each.
	Resources map[string][]string
	// Flags are, by resource type listed, the flags of mapping.Write.Flags
	// (conditionalCreate, conditionalUpdate, updateCreate) the statement
	// declares true; one declared false or left out (R4's default: false)
	// is not in it.
	Flags map[string][]string
	// Unsupported are the resource types the gateway delivers
	// (WorkerOptions.Resources) that the statement does not list, or lists
	// without an interaction or a flag the deliveries use, by type; the
	// worker fills it in.
	Unsupported []TypeGap
	// Checked is when the statement was read.
	Checked time.Time
}

// TypeGap is a resource type the gateway delivers that a destination's
// CapabilityStatement does not support.
type TypeGap struct {
	Type string
	// Listed is whether the statement lists the type (under rest.resource).
	Listed bool
	// Missing are the interactions the deliveries use on it that the
	// statement does not list (all of them when the type is not listed).
	Missing []string
	// Flags are the capability flags the deliveries rely on for it
	// (mapping.Write.Flags: conditionalCreate for a conditional create,
	// conditionalUpdate for a conditional update, updateCreate for a PUT
	// that creates) that the statement declares false or leaves out (all
	// of them when the type is not listed). An EHR may still honour them
	// undeclared: a gap, not a refusal.
	Flags []string
}

// Gaps returns the types of needs (what the gateway delivers) that c
// does not list, or lists without some of their interactions or without
// declaring some of their flags true, in the order of needs. A statement that lists no resource at all (rest.resource
// is optional in R4; minimal servers leave it out) says nothing about any
// type, and has no gaps.
func (c Capabilities) Gaps(needs []mapping.Write) []TypeGap {
	if c.Resources == nil {
		return nil
	}
	var out []TypeGap
	for _, n := range needs {
		listed, ok := c.Resources[n.Type]
		var missing []string
		for _, in := range n.Interactions {
			if !slices.Contains(listed, in) {
				missing = append(missing, in)
			}
		}
		var flags []string
		for _, f := range n.Flags {
			if !slices.Contains(c.Flags[n.Type], f) {
				flags = append(flags, f)
			}
		}
		if len(missing) > 0 || len(flags) > 0 {
			out = append(out, TypeGap{Type: n.Type, Listed: ok, Missing: missing, Flags: flags})
		}
	}
	return out
}

// Mode returns the strongest mode up to configured that the statement
// supports: transaction, else batch, else single.
func (c Capabilities) Mode(configured Mode) Mode {
	switch {
	case configured == ModeTransaction && c.Transaction:
		return ModeTransaction
	case (configured == ModeTransaction || configured == ModeBatch) && c.Batch:
		return ModeBatch
	}
	return ModeSingle
}

// R4 reports whether the statement is for FHIR R4 (4.0.x).
func (c Capabilities) R4() bool { return strings.HasPrefix(c.FHIRVersion, "4.0") }

// Capabilities reads BaseURL/metadata. Its errors are PHI-free reasons.
func (c *Client) Capabilities(ctx context.Context) (Capabilities, error) {
	resp, err := c.do(ctx, http.MethodGet, c.url("metadata"), nil, nil)
	if err != nil {
		return Capabilities{}, errors.New("metadata: " + describe(err).reason)
	}
	if !is2xx(resp.status) {
		return Capabilities{}, errors.New("metadata: http " + strconv.Itoa(resp.status))
	}
	var cs struct {
		ResourceType string `json:"resourceType"`
		FHIRVersion  string `json:"fhirVersion"`
		Software     struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		} `json:"software"`
		Rest []struct {
			Mode        string `json:"mode"`
			Interaction []struct {
				Code string `json:"code"`
			} `json:"interaction"`
			Resource []struct {
				Type        string `json:"type"`
				Interaction []struct {
					Code string `json:"code"`
				} `json:"interaction"`
				// The flags of mapping.Write.Flags; absent is false.
				ConditionalCreate bool `json:"conditionalCreate"`
				ConditionalUpdate bool `json:"conditionalUpdate"`
				UpdateCreate      bool `json:"updateCreate"`
			} `json:"resource"`
		} `json:"rest"`
	}
	if json.Unmarshal(resp.body, &cs) != nil || cs.ResourceType != "CapabilityStatement" {
		return Capabilities{}, errors.New("metadata: not a CapabilityStatement")
	}
	caps := Capabilities{FHIRVersion: clip(cs.FHIRVersion), Checked: c.clock.Now(),
		Software: clip(strings.TrimSpace(cs.Software.Name + " " + cs.Software.Version))}
	for _, r := range cs.Rest {
		if r.Mode != "server" {
			continue
		}
		codes := make([]string, 0, len(r.Interaction))
		for _, in := range r.Interaction {
			codes = append(codes, in.Code)
		}
		caps.Transaction = caps.Transaction || slices.Contains(codes, "transaction")
		caps.Batch = caps.Batch || slices.Contains(codes, "batch")
		for _, res := range r.Resource {
			if caps.Resources == nil {
				caps.Resources = map[string][]string{}
			}
			typ := clip(res.Type)
			for _, in := range res.Interaction {
				if code := clip(in.Code); !slices.Contains(caps.Resources[typ], code) {
					caps.Resources[typ] = append(caps.Resources[typ], code)
				}
			}
			if caps.Resources[typ] == nil {
				caps.Resources[typ] = []string{}
			}
			flag := func(on bool, f string) {
				if !on || slices.Contains(caps.Flags[typ], f) { // a type listed twice
					return
				}
				if caps.Flags == nil {
					caps.Flags = map[string][]string{}
				}
				caps.Flags[typ] = append(caps.Flags[typ], f)
			}
			flag(res.ConditionalCreate, mapping.FlagConditionalCreate)
			flag(res.ConditionalUpdate, mapping.FlagConditionalUpdate)
			flag(res.UpdateCreate, mapping.FlagUpdateCreate)
		}
	}
	return caps, nil
}
