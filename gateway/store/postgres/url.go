package postgres

import (
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// errAmbiguousURL refuses a URL whose user information cannot be told
// from its host: a password holding a reserved character that is not
// percent-encoded ("postgres://kg:p@ss#w/rd@db/kg" parses as the host
// "ss#w"...). Neither the URL nor anything parsed from it is repeated: the
// parts would be pieces of the password.
var errAmbiguousURL = fmt.Errorf("postgres: %w: the URL's user information holds a reserved character (@ # / ? :), "+
	"or an @ follows its host: percent-encode the password (%%40 for @, %%23 for #, %%2F for /, %%3F for ?, %%3A for :; "+
	"an @ in a setting's value as %%40), or leave the password out of the URL and set PGPASSWORD", store.ErrInvalidSettings)

// ambiguous tells whether the postgres:// URL raw has an @ after the
// end of its authority (the first / ? or # after "://"): then a password
// holding one of those characters unencoded was cut there, and what a
// parser takes for the host, port and database are pieces of it.
func ambiguous(raw string) bool {
	_, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return false
	}
	end := strings.IndexAny(rest, "/?#")
	return end >= 0 && strings.Contains(rest[end:], "@")
}

// Describe names the database of the postgres:// URL raw for the log and
// errors: its host, port and database, never its password, user or
// settings. A URL that cannot be parsed, or not unambiguously (a password
// with an unencoded reserved character), is not described at all: what
// would be its host may be a piece of the password.
func Describe(raw string) string {
	if ambiguous(raw) {
		return "postgres (URL not shown: its user information holds an unencoded reserved character)"
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "postgres (unparsable URL)"
	}
	return "postgres://" + u.Host + u.Path
}

// settingHints say what a setting takes, for the error naming it.
var settingHints = map[string]string{
	"sslmode":     "want disable, allow, prefer, require, verify-ca or verify-full",
	"sslrootcert": "the file must exist, be readable by the gateway and hold the PEM certificate of the CA that signed the server's certificate (or be \"system\")",
	"sslcert":     "the file must exist, be readable by the gateway and hold a PEM certificate; sslcert and sslkey go together",
	"sslkey":      "the file must exist, be readable by the gateway and hold the PEM key of sslcert (sslpassword if it is encrypted)",
	"port":        "want a port number",

	"connect_timeout":               "want a number of seconds",
	"target_session_attrs":          "want any, read-write, read-only, primary, standby or prefer-standby",
	"pool_max_conns":                "want a positive number",
	"pool_min_conns":                "want a number",
	"pool_min_idle_conns":           "want a number",
	"pool_max_conn_lifetime":        "want a duration such as 30m",
	"pool_max_conn_idle_time":       "want a duration such as 30m",
	"pool_health_check_period":      "want a duration such as 1m",
	"pool_max_conn_lifetime_jitter": "want a duration such as 1m",
	"pool_ping_timeout":             "want a duration such as 5s",
}

// settingError is Open's error for a URL pgx refused to parse: it names
// the setting at fault (its key, from pgx's message) but repeats neither
// pgx's text, which may quote the URL, nor the value. raw is the URL.
func settingError(raw string, err error) error {
	key := faultySetting(raw, err)
	if key == "" {
		return fmt.Errorf("postgres: %w: the URL cannot be read, or one of its settings (or of the PG* environment variables) "+
			"is invalid; write it as postgres://USER@HOST:PORT/DBNAME?setting=value", store.ErrInvalidSettings)
	}
	return invalidSetting(key, settingHints[key])
}

// invalidSetting is the error for the URL setting key, with what it
// takes: the key is named, its value never.
func invalidSetting(key, want string) error {
	if want == "" {
		want = "see its description in docs/deployment.md or libpq's"
	}
	return fmt.Errorf("postgres: %w: the setting %s (in the URL's query, or its PG* environment variable) is invalid: %s",
		store.ErrInvalidSettings, key, want)
}

// faultySetting finds the setting pgx's parse error err is about, "" if
// none: by the words pgx uses for the TLS files, else by the first key of
// the URL's query (or a libpq key) its message names.
func faultySetting(raw string, err error) string {
	msg := err.Error()
	var pce *pgconn.ParseConfigError
	if errors.As(err, &pce) {
		// "cannot parse `<the URL, its password masked>`: <what> (<why>)"
		if _, after, ok := strings.Cut(msg, "`: "); ok {
			msg = after
		}
	}
	switch {
	case strings.Contains(msg, "failed to parse as URL"):
		return ""
	case strings.Contains(msg, "sslmode"):
		return "sslmode"
	case strings.Contains(msg, "CA file"), strings.Contains(msg, "CA to cert pool"), strings.Contains(msg, "system certificate pool"):
		return "sslrootcert"
	case strings.Contains(msg, `"sslcert" and "sslkey"`), strings.Contains(msg, "read cert"), strings.Contains(msg, "load cert"):
		return "sslcert"
	case strings.Contains(msg, "sslpassword"):
		return "sslpassword"
	case strings.Contains(msg, "sslkey"), strings.Contains(msg, "decrypt key"):
		return "sslkey"
	case strings.Contains(msg, "invalid port"):
		return "port"
	}
	keys := []string{"connect_timeout", "target_session_attrs", "sslcertmode", "sslnegotiation", "channel_binding",
		"require_auth", "min_protocol_version", "max_protocol_version", "service"}
	if _, query, ok := strings.Cut(raw, "?"); ok {
		q, _ := url.ParseQuery(query)
		for k := range q {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return len(keys[i]) > len(keys[j]) }) // pool_max_conn_lifetime before pool_max_conns
	best, at := "", len(msg)
	for _, k := range keys {
		if i := strings.Index(msg, k); i >= 0 && (i < at || i == at && len(k) > len(best)) {
			best, at = k, i
		}
	}
	return best
}
