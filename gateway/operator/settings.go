package operator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// Settings groups that must agree between the gateways on one database
// (docs/deployment.md, "Settings every gateway must share"): each is
// recorded as a fingerprint (Fingerprint), never as its values.
const (
	SettingsClinical       = "clinical"        // safety thresholds and clinical settings, for every tenant and per tenant
	SettingsMapping        = "mapping"         // mapping.Version
	SettingsDestinations   = "destinations"    // the delivery destinations, their modes and filters
	SettingsIdentifierBase = "identifier-base" // the identifier base
	SettingsTokenSecret    = "token-secret"    // GATEWAY_TOKEN_SECRET (random per process when unset)
	SettingsClients        = "clients"         // the registered clients and external issuers
)

// Fingerprint is the fingerprint of one group's settings: a salted
// SHA-256 of value (the group's settings, serialised the same way by
// every gateway of a release), truncated. It tells whether two gateways'
// settings agree, and never what they are.
func Fingerprint(group string, value []byte) string {
	h := sha256.New()
	h.Write([]byte("ketamine-gateway settings fingerprint v1\x00" + group + "\x00"))
	h.Write(value)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// SettingsDifference is another live gateway on the database whose
// settings differ from this one's in Groups (names only, never values).
type SettingsDifference struct {
	Instance string   `json:"instance"`
	Groups   []string `json:"groups"`
}

// SettingsCheck records this gateway's settings fingerprints and a
// heartbeat in the database, and compares them with those of the other
// gateways seen recently: each difference is logged as a warning when it
// is first seen (naming the other instance and the groups), and told by
// Differences (readyz, the metrics). It never stops a gateway: during a
// rolling upgrade the gateways differ for a while, on purpose.
type SettingsCheck struct {
	st    store.Instances
	self  store.Instance
	every time.Duration
	log   *slog.Logger
	now   func() time.Time

	mu     sync.Mutex
	diffs  []SettingsDifference
	warned map[string]string // instance -> the groups last warned of
	stop   context.CancelFunc
	done   chan struct{}
}

// SettingsCheckConfig configures a SettingsCheck.
type SettingsCheckConfig struct {
	// Store keeps the instances (required); Instance is this gateway's
	// name, Fingerprints its fingerprint per group (Fingerprint).
	Store        store.Instances
	Instance     string
	Fingerprints map[string]string
	// Every is the heartbeat (default 30 s): a gateway not seen for three
	// of them is no longer compared with.
	Every time.Duration
	// Logger gets the warnings (default: discarded); Now is the clock.
	Logger *slog.Logger
	Now    func() time.Time
}

// NewSettingsCheck returns a SettingsCheck; it does no I/O (see Check,
// Start).
func NewSettingsCheck(cfg SettingsCheckConfig) *SettingsCheck {
	if cfg.Every <= 0 {
		cfg.Every = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &SettingsCheck{st: cfg.Store, self: store.Instance{Name: cfg.Instance, Fingerprints: cfg.Fingerprints},
		every: cfg.Every, log: cfg.Logger, now: cfg.Now, warned: map[string]string{}}
}

// Check records this gateway's fingerprints and heartbeat, then compares
// them with every other gateway seen within three heartbeats. A group
// only one of the two records (another release's) is not compared.
// Returns the store's errors (the last comparison stays).
func (c *SettingsCheck) Check(ctx context.Context) error {
	now := c.now()
	self := c.self
	self.Seen = now
	if err := c.st.PutInstance(ctx, self); err != nil {
		return err
	}
	live, err := c.st.ListInstances(ctx, now.Add(-3*c.every))
	if err != nil {
		return err
	}
	var diffs []SettingsDifference
	for _, in := range live {
		if in.Name == self.Name {
			continue
		}
		var groups []string
		for g, fp := range self.Fingerprints {
			if other, ok := in.Fingerprints[g]; ok && other != fp {
				groups = append(groups, g)
			}
		}
		if len(groups) > 0 {
			slices.Sort(groups)
			diffs = append(diffs, SettingsDifference{Instance: in.Name, Groups: groups})
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.diffs = diffs
	seen := map[string]bool{}
	for _, d := range diffs {
		seen[d.Instance] = true
		groups := strings.Join(d.Groups, ", ")
		if c.warned[d.Instance] == groups {
			continue
		}
		c.warned[d.Instance] = groups
		c.log.Warn("another gateway on this database runs with different settings: records are mapped, delivered or "+
			"authenticated differently depending on which gateway serves a request; give every gateway the same "+
			"settings of these groups (docs/deployment.md, \"Settings every gateway must share\")",
			"other_instance", d.Instance, "settings_differing", groups)
	}
	for name := range maps.Clone(c.warned) {
		if !seen[name] {
			delete(c.warned, name)
			c.log.Info("the settings of this gateway and another agree again (or it is no longer running)", "other_instance", name)
		}
	}
	return nil
}

// Differences returns the other live gateways whose settings differed
// at the last Check; none is an empty list, never nil (readyz shows
// "settingsDiffer": []).
func (c *SettingsCheck) Differences() []SettingsDifference {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]SettingsDifference{}, c.diffs...)
}

// Start checks at once and then every heartbeat until Close; a check
// that fails (the database unreachable) is logged and tried at the next.
// Calling it twice does nothing.
func (c *SettingsCheck) Start() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stop != nil {
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	c.stop, c.done = stop, make(chan struct{})
	go func() {
		defer close(c.done)
		t := time.NewTicker(c.every)
		defer t.Stop()
		for {
			if err := c.Check(ctx); err != nil && ctx.Err() == nil {
				c.log.Warn("settings check: could not record or compare this gateway's settings", "error_class", store.ErrorClass(err))
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// Close stops Start's checks, waits for them and deletes this gateway's
// record (a clean shutdown: the gateway that replaces it, under another
// process name, is not compared with it for three heartbeats); safe to
// call twice or without Start. A record it cannot delete (the database
// unreachable) ages out.
func (c *SettingsCheck) Close() {
	c.mu.Lock()
	stop, done := c.stop, c.done
	c.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.st.DeleteInstance(ctx, c.self.Name); err != nil {
		c.log.Warn("settings check: could not delete this gateway's record; it ages out in three heartbeats",
			"error_class", store.ErrorClass(err))
	}
}
