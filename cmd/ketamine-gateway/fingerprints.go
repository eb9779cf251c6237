package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/delivery"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/operator"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// settingsFingerprints are this gateway's fingerprints of the settings
// that must agree between the gateways on one database (docs/deployment.md,
// "Settings every gateway must share"), by group: each a salted hash
// (operator.Fingerprint), never a value. Only what changes what a record
// becomes, where it goes or who is let in is fingerprinted; per-process
// tuning (timeouts, rate limits, workers) may differ.
func settingsFingerprints(fc *fileConfig, getenv func(string) string, all *mapping.Safety, tenants map[string]mapping.Safety,
	dests []delivery.Destination, identifierBase string) map[string]string {
	fp := map[string]string{}
	put := func(group string, v any) {
		b, err := json.Marshal(v)
		if err != nil { // plain data: never
			b = []byte(err.Error())
		}
		fp[group] = operator.Fingerprint(group, b)
	}
	put(operator.SettingsClinical, struct {
		All     *mapping.Safety
		Tenants map[string]mapping.Safety
	}{all, tenants})
	put(operator.SettingsMapping, mapping.Version)
	type dest struct {
		Name, BaseURL string
		Mode          delivery.Mode
		MaxEntries    int
		Filter        delivery.Filter
	}
	var ds []dest
	for _, d := range dests {
		ds = append(ds, dest{d.Name, strings.TrimRight(d.BaseURL, "/"), d.Mode, d.MaxEntries, d.Filter})
	}
	slices.SortFunc(ds, func(a, b dest) int { return strings.Compare(a.Name, b.Name) })
	put(operator.SettingsDestinations, ds)
	put(operator.SettingsIdentifierBase, identifierBase)
	if fc.Auth != nil {
		// The token secret as authServer takes it: the variable, else the
		// file's; without either each process makes a random one, so its
		// fingerprint is one no other gateway has.
		secret := fc.Auth.SigningSecret
		if v := getenv("GATEWAY_TOKEN_SECRET"); v != "" {
			secret, _ = base64.StdEncoding.DecodeString(v) // checked by authServer
		}
		if len(secret) == 0 {
			secret = make([]byte, 32)
			_, _ = rand.Read(secret)
		}
		fp[operator.SettingsTokenSecret] = operator.Fingerprint(operator.SettingsTokenSecret, secret)
		clients := *fc.Auth
		clients.SigningSecret = nil
		put(operator.SettingsClients, clients)
	}
	return fp
}

// isPostgres tells whether --db names a PostgreSQL database (which
// several gateways may share).
func isPostgres(db string) bool {
	return strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://")
}
