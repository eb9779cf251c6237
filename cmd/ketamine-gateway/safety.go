package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// safetyConfig is the safety section of --config (docs/configuration.md):
// overrides of the mappings' safety thresholds (mapping.DefaultSafety) for
// every tenant, and per tenant on top of those. A setting left out keeps
// the value beneath it.
type safetyConfig struct {
	safetyOverride
	Tenants map[string]safetyOverride `json:"tenants"`
}

// safetyOverride is one set of overrides.
type safetyOverride struct {
	PHQ9Item9Min            *int                      `json:"phq9Item9Min"`
	MADRSItem10Min          *int                      `json:"madrsItem10Min"`
	QIDSItem12Min           *int                      `json:"qidsItem12Min"`
	CSSRSMinRisk            *string                   `json:"cssrsMinRisk"`
	AdverseEventMinGrade    *int                      `json:"adverseEventMinGrade"`
	SessionMinIntervalHours *float64                  `json:"sessionMinIntervalHours"`
	Vitals                  map[string]limitsOverride `json:"vitals"`
}

// limitsOverride overrides one measurement's limits (0 turns a limit off).
type limitsOverride struct {
	High         *float64 `json:"high"`
	CriticalHigh *float64 `json:"criticalHigh"`
	Low          *float64 `json:"low"`
	CriticalLow  *float64 `json:"criticalLow"`
}

// apply returns base with the overrides applied, or an error naming the
// setting that is unknown or makes no sense.
func (o safetyOverride) apply(base mapping.Safety) (mapping.Safety, error) {
	s := base
	set(&s.PHQ9Item9, o.PHQ9Item9Min)
	set(&s.MADRSItem10, o.MADRSItem10Min)
	set(&s.QIDSItem12, o.QIDSItem12Min)
	set(&s.CSSRSRisk, o.CSSRSMinRisk)
	set(&s.AdverseEventGrade, o.AdverseEventMinGrade)
	set(&s.SessionMinIntervalHours, o.SessionMinIntervalHours)
	limits := map[string]*mapping.Limits{"systolic": &s.Systolic, "diastolic": &s.Diastolic, "heartRate": &s.HeartRate,
		"respiratoryRate": &s.RespiratoryRate, "spo2": &s.SpO2, "temperature": &s.Temperature}
	for name, lo := range o.Vitals {
		l, ok := limits[name]
		if !ok {
			names := make([]string, 0, len(limits))
			for n := range limits {
				names = append(names, n)
			}
			slices.Sort(names)
			return s, fmt.Errorf("vitals.%s: unknown measurement (one of %s)", name, strings.Join(names, ", "))
		}
		set(&l.High, lo.High)
		set(&l.CriticalHigh, lo.CriticalHigh)
		set(&l.Low, lo.Low)
		set(&l.CriticalLow, lo.CriticalLow)
	}
	return s, s.Validate()
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// safety resolves the safety section: the thresholds of every tenant (nil
// without overrides: the mappings' defaults) and of the tenants that have
// their own.
func safety(fc *fileConfig) (*mapping.Safety, map[string]mapping.Safety, error) {
	if fc.Safety == nil {
		return nil, nil, nil
	}
	all, err := fc.Safety.apply(mapping.DefaultSafety())
	if err != nil {
		return nil, nil, fmt.Errorf("%s: safety.%v", fc.in(), err)
	}
	tenants := map[string]mapping.Safety{}
	for name, o := range fc.Safety.Tenants {
		if tenants[name], err = o.apply(all); err != nil {
			return nil, nil, fmt.Errorf("%s: safety.tenants.%s.%v", fc.in(), name, err)
		}
	}
	return &all, tenants, nil
}

// unknownSafetyTenants returns, sorted, the tenants of the safety
// section's per-tenant overrides that no record can be written for: no
// registered client belongs to them, no external issuer names them (one
// that names none may name any tenant: then none is unknown), and the
// database holds no record of theirs (stored). Their thresholds would
// never apply: most likely a misspelt tenant, whose clinic then keeps the
// thresholds beneath. known lists, for the message, the tenants there are.
func unknownSafetyTenants(fc *fileConfig, stored []string) (unknown []string, known string) {
	if fc.Safety == nil || len(fc.Safety.Tenants) == 0 {
		return nil, ""
	}
	tenants, any := authTenants(fc)
	if any {
		return nil, ""
	}
	for _, t := range stored {
		tenants[t] = true
	}
	for name := range fc.Safety.Tenants {
		if !tenants[name] {
			unknown = append(unknown, name)
		}
	}
	slices.Sort(unknown)
	delete(tenants, "")
	names := slices.Sorted(maps.Keys(tenants))
	if len(names) == 0 {
		return unknown, "none but the default tenant"
	}
	return unknown, strings.Join(names, ", ")
}

// checkSafetyTenants refuses (exit 2) a configuration whose safety section
// has an override for a tenant no record can be written for
// (unknownSafetyTenants); the database's tenants are read only when there
// is such an override.
// checkSafetyTenantsFirst checks the safety section's tenants before the
// database is opened, when it can: against the configuration alone, and a
// SQLite file that does not exist yet holds no tenant. Otherwise
// checkSafetyTenants checks them against the opened database.
func checkSafetyTenantsFirst(fc *fileConfig, db string) error {
	if fc.Safety == nil || len(fc.Safety.Tenants) == 0 || strings.Contains(db, "://") {
		return nil
	}
	if _, err := os.Stat(db); !errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return safetyTenantsError(fc, nil)
}

func safetyTenantsError(fc *fileConfig, stored []string) error {
	if unknown, known := unknownSafetyTenants(fc, stored); len(unknown) > 0 {
		return &exitError{code: exitUsage, msg: fmt.Sprintf("%s: safety.tenants.%s: no client belongs to this tenant, "+
			"no external issuer names it and no record of it is stored, so its thresholds would never apply "+
			"(a misspelt tenant?); the tenants are: %s", fc.in(), unknown[0], known)}
	}
	return nil
}

func checkSafetyTenants(ctx context.Context, fc *fileConfig, st store.Store) error {
	if fc.Safety == nil || len(fc.Safety.Tenants) == 0 {
		return nil
	}
	stored, err := st.LedgerTenants(ctx)
	if err != nil {
		return &exitError{code: exitUnchecked, msg: fmt.Sprintf("serve: %v", err)}
	}
	return safetyTenantsError(fc, stored)
}
