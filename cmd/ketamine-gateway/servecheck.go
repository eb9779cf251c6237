package main

import (
	"flag"
	"fmt"
	"math"
	"net/url"
	"time"
)

// maxJobWorkers bounds serve --job-workers.
const maxJobWorkers = 64

// setFlags names the flags given on fs's command line.
func setFlags(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// envDurationFlag is the default of a duration flag whose environment
// variable key may set it: def when key is unset, else key's value, which
// must parse as the flag's would and be positive (an error names key and
// says what to write).
func envDurationFlag(getenv func(string) string, key string, def time.Duration) (time.Duration, error) {
	v := getenv(key)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return def, fmt.Errorf("%s: %q is not a duration: write it with the units h, m and s (168h for 7 days)", key, v)
	}
	if d <= 0 {
		return def, fmt.Errorf("%s: %q: must be positive", key, v)
	}
	return d, nil
}

// checkServeValues refuses serve's out-of-range values (exit 2), naming
// the flag (or, when it came from there, its environment variable) and
// what is wrong, never the value of a URL (it may carry a credential).
// set names the flags given on the command line.
func checkServeValues(cfg serveConfig, set map[string]bool) error {
	if cfg.baseURL != "" {
		name := "--base-url"
		if !set["base-url"] {
			name = "GATEWAY_BASE_URL"
		}
		if err := checkBaseURL(cfg.baseURL); err != nil {
			return usageError("serve", "%s: %v", name, err)
		}
	}
	for _, c := range []struct {
		name string
		bad  bool
		want string
	}{
		{"--max-body", cfg.maxBody <= 0, "a positive number of bytes"},
		{"--max-import", cfg.maxImport <= 0, "a positive number of bytes"},
		{"--max-entries", cfg.maxEntries <= 0, "a positive number of Bundle entries"},
		{"--job-workers", cfg.jobWorkers < 1 || cfg.jobWorkers > maxJobWorkers, fmt.Sprintf("from 1 to %d", maxJobWorkers)},
		{"--job-retention", cfg.jobRetention <= 0, "a positive duration (24h, 168h)"},
		{"--job-lease", cfg.jobLease < time.Second, "at least 1s (the lease is renewed every third of it)"},
		{"--rate-limit", set["rate-limit"] && (cfg.rateLimit < 0 || math.IsNaN(cfg.rateLimit) || math.IsInf(cfg.rateLimit, 0)),
			"requests per second, 0 to turn it off"},
	} {
		if c.bad {
			return usageError("serve", "%s must be %s", c.name, c.want)
		}
	}
	return nil
}

// checkBaseURL: the public base URL every Location, fullUrl, link and job
// URL starts with must be an absolute http(s) URL with a host and no
// query, fragment or credentials.
func checkBaseURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("must be an absolute http or https URL, such as https://gw.example.org/fhir")
	case u.User != nil:
		return fmt.Errorf("must not hold credentials (user:password@)")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.RawFragment != "":
		return fmt.Errorf("must not have a query (?) or a fragment (#): every URL the gateway answers with is built on it")
	}
	return nil
}
