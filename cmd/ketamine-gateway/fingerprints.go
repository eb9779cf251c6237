package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
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
		// MRNSystems is left out when not set, so that a gateway of an
		// earlier build without it has the same fingerprint.
		MRNSystems *[]string `json:",omitempty"`
	}
	var ds []dest
	for _, d := range dests {
		ds = append(ds, dest{d.Name, strings.TrimRight(d.BaseURL, "/"), d.Mode, d.MaxEntries, d.Filter, nil})
		if d.MRNSystems != nil {
			ds[len(ds)-1].MRNSystems = &d.MRNSystems
		}
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
		// A client's keys, not where they are read from: the same keys
		// under another configuration directory are the same setting.
		// (A key set that does not load stops the gateway in authServer;
		// its error text stands for it here.)
		clients.Clients = slices.Clone(clients.Clients)
		for i, c := range clients.Clients {
			set, err := auth.KeySet(c)
			if err != nil {
				set, _ = json.Marshal(err.Error())
			}
			clients.Clients[i].JWKS, clients.Clients[i].JWKSFile = set, ""
		}
		put(operator.SettingsClients, clients)
	}
	return fp
}

// processName names this process among the gateways on the database: its
// --instance and a short random suffix drawn at start (the settings
// check's record, the job claims' claimedBy). Not the pid: in containers
// every gateway is pid 1, and a gateway restarted with the same pid would
// take for another gateway the record its previous process left.
func processName(instance string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return instance + " " + hex.EncodeToString(b[:])
}

// isPostgres tells whether --db names a PostgreSQL database (which
// several gateways may share).
func isPostgres(db string) bool {
	return strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://")
}
