package mapping_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// TestDifficultyOnlyWhereDefined: the difficulty answer is mapped only for
// an instrument whose definition has a difficulty item, and a clinical
// rule refuses it on any other, whatever the schema lets through (p20 F2:
// a new instrument left out of the schema's list got PHQ-9's difficulty
// Observation).
func TestDifficultyOnlyWhereDefined(t *testing.T) {
	for _, in := range mapping.Instruments() {
		t.Run(in.Name, func(t *testing.T) {
			doc := map[string]any{
				"source":     map[string]any{"system": "clinic", "recordId": "A-1", "version": "1"},
				"patient":    map[string]any{"id": "P-1"},
				"instrument": in.Name, "takenAt": "2026-03-02T08:45:00-05:00", "difficulty": "very-difficult",
			}
			if in.MaxTotal > 0 {
				doc["total"] = 1
			} else {
				doc["items"] = []any{map[string]any{"number": 1, "answer": false}}
			}
			for _, nested := range []bool{false, true} {
				kind, pointer := mapping.KindAssessment, "/difficulty"
				if nested {
					kind, pointer = mapping.KindSession, "/assessments/0/difficulty"
					a := doc
					a["recordId"] = "A-1"
					delete(a, "source")
					delete(a, "patient")
					doc = map[string]any{
						"source":  map[string]any{"system": "clinic", "recordId": "S-1", "version": "1"},
						"patient": map[string]any{"id": "P-1"},
						"infusion": map[string]any{"drug": "ketamine-iv", "status": "completed", "doseMgPerKg": 0.5,
							"bodyWeightKg": 80, "totalDoseMg": 40, "infusionStart": "2026-03-02T09:00:00-05:00",
							"infusionEnd": "2026-03-02T09:40:00-05:00", "monitoringEnd": "2026-03-02T11:00:00-05:00"},
						"assessments": []any{a},
					}
					a["takenAt"] = "2026-03-02T09:50:00-05:00"
				}
				b, _ := json.Marshal(doc)
				rec, err := mapping.Decode(kind, b)
				if err != nil {
					t.Fatal(err)
				}
				res, err := mapping.Map(rec, mapping.Options{})
				if in.Difficulty == "" {
					var re *mapping.RuleError
					if !errors.As(err, &re) || len(re.Violations) != 1 || re.Violations[0].Rule != "assessment.difficulty-not-applicable" ||
						re.Violations[0].Pointer != pointer {
						t.Fatalf("Map(%s with difficulty, nested %v) = %v, want assessment.difficulty-not-applicable at %s", in.Name, nested, err, pointer)
					}
					continue
				}
				if err != nil {
					t.Fatalf("Map(%s with difficulty) = %v", in.Name, describe(err))
				}
				out, _ := res.TransactionJSON()
				if !strings.Contains(string(out), `"LA6575-0"`) {
					t.Errorf("Map(%s with difficulty) has no difficulty answer", in.Name)
				}
			}
		})
	}
}
