package operator

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// UpgradeStore is the part of the store an UpgradeWatch uses.
type UpgradeStore interface {
	RepairOrder(ctx context.Context) (store.OrderRepair, error)
	SchemaFloor(ctx context.Context) (store.SchemaFloor, error)
}

// UpgradeWatch keeps a running gateway safe while other gateways upgrade
// the database it shares (docs/deployment.md, "Starting, migrations,
// upgrades"). At start and every heartbeat it
//   - repairs the delivery order keys that a gateway of a release before
//     them, still running, left wrong (store.Outbox.RepairOrder; p38 F1, F2);
//   - reads the database's schema floor: once a later release has run a
//     migration that this gateway must not outlive (store.SchemaFloor), it
//     is Superseded for good: it logs an ERROR saying to stop it, the
//     delivery worker and the job runner claim nothing more, and readiness
//     answers unready, rather than serving wrong answers (p38 F3).
type UpgradeWatch struct {
	st    UpgradeStore
	every time.Duration
	log   *slog.Logger

	superseded atomic.Bool
	mu         sync.Mutex
	stop       context.CancelFunc
	done       chan struct{}
}

// UpgradeWatchConfig configures an UpgradeWatch.
type UpgradeWatchConfig struct {
	Store UpgradeStore // required
	// Every is the heartbeat (default 30 s); Logger gets the repairs and
	// the ERROR (default: discarded).
	Every  time.Duration
	Logger *slog.Logger
}

// NewUpgradeWatch returns an UpgradeWatch; it does no I/O (see Check,
// Start).
func NewUpgradeWatch(cfg UpgradeWatchConfig) *UpgradeWatch {
	if cfg.Every <= 0 {
		cfg.Every = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &UpgradeWatch{st: cfg.Store, every: cfg.Every, log: cfg.Logger}
}

// Superseded reports whether a later release migrated the database past
// a schema this gateway can serve safely: it must claim no work and be
// stopped. Once true it stays true (safe on a nil watch: false).
func (w *UpgradeWatch) Superseded() bool { return w != nil && w.superseded.Load() }

// Check reads the schema floor and then repairs the order keys (not once
// Superseded: this gateway's idea of them is no longer the database's).
// Returns the store's errors.
func (w *UpgradeWatch) Check(ctx context.Context) error {
	f, err := w.st.SchemaFloor(ctx)
	if err != nil {
		return err
	}
	if f.TooOld() {
		if !w.superseded.Swap(true) {
			w.log.Error("a later release migrated the database past a schema this gateway can serve safely: "+
				"it claims no deliveries or jobs and answers /readyz unready; stop this gateway and run the later "+
				"release instead (docs/deployment.md, \"Rolling and stop-the-world upgrades\")",
				"schema", f.Program, "database_schema", f.Database, "database_floor", f.Floor)
		}
		return nil
	}
	r, err := w.st.RepairOrder(ctx)
	if err != nil {
		return err
	}
	if r.Keyed > 0 || r.Cleared > 0 {
		w.log.Warn("repaired the delivery order of items that a gateway of a release before schema 17 (SQLite) or 19 "+
			"(PostgreSQL) wrote: stop the older gateways (docs/deployment.md, \"Rolling and stop-the-world upgrades\")",
			"items_keyed", r.Keyed, "keys_cleared", r.Cleared)
	}
	return nil
}

// Start checks at once and then every heartbeat until Close; a check
// that fails (the database unreachable) is logged and tried at the next.
// Calling it twice does nothing.
func (w *UpgradeWatch) Start() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stop != nil {
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	w.stop, w.done = stop, make(chan struct{})
	go func() {
		defer close(w.done)
		t := time.NewTicker(w.every)
		defer t.Stop()
		for {
			if err := w.Check(ctx); err != nil && ctx.Err() == nil {
				w.log.Warn("upgrade watch: could not read the schema floor or repair the delivery order",
					"error_class", store.ErrorClass(err))
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// Close stops Start's checks and waits for them; safe to call twice or
// without Start.
func (w *UpgradeWatch) Close() {
	w.mu.Lock()
	stop, done := w.stop, w.done
	w.stop = nil
	w.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

// GateOutbox is o, whose Claim claims nothing while superseded() (the
// serving gateway's UpgradeWatch.Superseded): a gateway a later release
// has superseded sends no more deliveries.
func GateOutbox(o store.Outbox, superseded func() bool) store.Outbox {
	return gatedOutbox{Outbox: o, superseded: superseded}
}

type gatedOutbox struct {
	store.Outbox
	superseded func() bool
}

func (g gatedOutbox) Claim(ctx context.Context, destination string, now time.Time, lease time.Duration, limit int) ([]*store.OutboxItem, error) {
	if g.superseded() {
		return nil, nil
	}
	return g.Outbox.Claim(ctx, destination, now, lease, limit)
}

// GateJobs is j, whose ClaimJob claims nothing while superseded(): a
// gateway a later release has superseded runs no more jobs (a job queued
// goes to a gateway of that release).
func GateJobs(j store.Jobs, superseded func() bool) store.Jobs {
	return gatedJobs{Jobs: j, superseded: superseded}
}

type gatedJobs struct {
	store.Jobs
	superseded func() bool
}

func (g gatedJobs) ClaimJob(ctx context.Context, kinds []string, claim string, now time.Time, lease time.Duration) (*store.Job, error) {
	if g.superseded() {
		return nil, nil
	}
	return g.Jobs.ClaimJob(ctx, kinds, claim, now, lease)
}
