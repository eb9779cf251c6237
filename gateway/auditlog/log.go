package auditlog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// Every request the gateway answers leaves exactly one AuditEvent (IHE
// BALP shaped, see package audit); one that named more than
// patientsPerEvent patients leaves one per so many, and an all-tenant
// client's also each touched tenant's share (shares.go). A request that
// writes data appends its AuditEvent inside the data's transaction
// (AppendTx), so data never exists without its audit; any other request
// (a read, a search, a failure) appends it with Append, durably, before
// its answer leaves: concurrent such requests share one transaction
// (group commit). All the AuditEvents of one request go in one
// transaction.

// ErrClosed is returned by Append after Close (or before Start).
var ErrClosed = errors.New("audit log is not running")

// Config configures a Log.
type Config struct {
	// Observer names this gateway process in the records (agent[1]);
	// "ketamine-gateway" by default.
	Observer string
	// Now is the clock (time.Now by default).
	Now func() time.Time
	// Disabled switches the audit trail (AuditEvents and Provenance) off;
	// only the overhead benchmark sets it.
	Disabled bool
}

// Log writes the audit trail to a store.
type Log struct {
	store    store.Store
	observer string
	now      func() time.Time
	disabled bool

	mu      sync.Mutex
	ch      chan *appendReq // nil when not running
	stopped chan struct{}
}

type appendReq struct {
	evs  []event
	done chan error
}

// event is an AuditEvent ready to store: its version and its index
// entries, made by the caller before the store's write transaction, so
// that the transaction (which every write of the store waits for) holds
// only the writes.
type event struct {
	res     *store.Resource
	entries []search.Entry
}

// newEvent makes rec's AuditEvent of tenant: what store.NewVersion makes
// of audit.Event(rec), written directly (audit.Render), and packed for
// the store (store.Resource.Pack) here, before the write transaction.
func newEvent(tenant string, rec audit.Record) event {
	body, entries := audit.Render(rec)
	res := &store.Resource{Type: "AuditEvent", ID: rec.ID, Version: 1,
		LastUpdated: rec.Recorded.UTC().Truncate(time.Millisecond), Body: body, Tenant: tenant}
	res.Pack()
	return event{res: res, entries: entries}
}

// newEvents makes the AuditEvents of recs (one, unless the request named
// more patients than one may hold: patientsPerEvent).
func newEvents(tenant string, recs []audit.Record) []event {
	out := make([]event, len(recs))
	for i, rec := range recs {
		out[i] = newEvent(tenant, rec)
	}
	return out
}

// putAll puts each of evs (put).
func putAll(tx store.Tx, evs []event) error {
	for _, ev := range evs {
		if err := ev.put(tx); err != nil {
			return err
		}
	}
	return nil
}

// put stores ev and appends it to the hash chain, inside tx; the store
// writes its search index entries after the commit (store.Tx.AppendAudit).
// It may run again for the same ev (a retried transaction).
func (ev event) put(tx store.Tx) error {
	if err := tx.Put(ev.res, nil); err != nil {
		return fmt.Errorf("store AuditEvent %s: %w", ev.res.ID, err)
	}
	if err := tx.AppendAudit(ev.res.ID, ev.res.Body, ev.entries); err != nil {
		return fmt.Errorf("chain AuditEvent %s: %w", ev.res.ID, err)
	}
	return nil
}

// maxBatch bounds one group commit.
const maxBatch = 256

// New returns a Log writing to st; nil st (a gateway without a store)
// audits nothing. It does no I/O and starts nothing: see Start.
func New(st store.Store, cfg Config) *Log {
	if cfg.Observer == "" {
		cfg.Observer = "ketamine-gateway"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Log{store: st, observer: cfg.Observer, now: cfg.Now, disabled: cfg.Disabled || st == nil}
}

// Enabled reports whether requests are audited.
func (l *Log) Enabled() bool { return !l.disabled }

// Start starts the group committer of Append. Close stops it.
func (l *Log) Start() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ch != nil || l.disabled {
		return
	}
	l.ch = make(chan *appendReq, maxBatch)
	l.stopped = make(chan struct{})
	go l.run(l.ch, l.stopped)
}

// Close stops the group committer once the records already queued are
// committed; later Appends fail with ErrClosed. It is safe to call twice.
func (l *Log) Close() error {
	l.mu.Lock()
	ch, stopped := l.ch, l.stopped
	l.ch = nil
	l.mu.Unlock()
	if ch == nil {
		return nil
	}
	close(ch)
	<-stopped
	return nil
}

// Append commits sc's AuditEvent, with the answer's status, and returns
// when it is durable (or failed: then the answer must not be sent). It is
// for requests whose data transaction did not already append it.
func (l *Log) Append(sc *Scope, status int) error {
	if l.disabled || sc.Interaction == "" {
		return nil
	}
	evs, err := l.events(sc, status, l.read)
	if err != nil {
		return err
	}
	r := &appendReq{evs: evs, done: make(chan error, 1)}
	l.mu.Lock()
	if l.ch == nil {
		l.mu.Unlock()
		return ErrClosed
	}
	// Sending under the lock keeps Close from closing the channel under a
	// sender; the committer never takes the lock, so this cannot deadlock.
	l.ch <- r
	l.mu.Unlock()
	return <-r.done
}

// AppendTx appends sc's AuditEvent, with status, inside tx, the request's
// data transaction (tx must not confine writes to another tenant: pass the
// store's own transaction). The caller marks sc committed once tx commits.
func (l *Log) AppendTx(tx store.Tx, sc *Scope, status int) error {
	if l.disabled || sc.Interaction == "" {
		return nil
	}
	evs, err := l.events(sc, status, tx.Read)
	if err != nil {
		return err
	}
	return putAll(tx, evs)
}

// events makes sc's AuditEvents, with status, each in its tenant: a
// tenant-bound request's (its record, split) in its tenant; an
// all-tenant request's whole record (split) in search.AllTenantsAudit
// and, in each tenant whose data it touched, that tenant's share
// (shares, split). read reads a stored resource of any tenant (to find
// the owner of what sc recorded none for); its errors, but not-found and
// gone, are returned: the request's AuditEvents cannot be made.
func (l *Log) events(sc *Scope, status int, read func(typ, id string) (*store.Resource, error)) ([]event, error) {
	first := l.record(sc, status)
	evs := newEvents(sc.auditTenant(), split(first))
	if !sc.allTenants() {
		return evs, nil
	}
	shares, err := l.shares(sc, first, read)
	if err != nil {
		return nil, err
	}
	for _, sh := range shares {
		evs = append(evs, newEvents(sh.Tenant, split(sh.Record))...)
	}
	return evs, nil
}

// read reads a stored resource of any tenant, for Append (an all-tenant
// request's AuditEvent looks up the tenants of what it named).
func (l *Log) read(typ, id string) (*store.Resource, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return l.store.Read(ctx, typ, id)
}

// run commits whatever is queued, as one transaction, until ch is closed.
func (l *Log) run(ch chan *appendReq, stopped chan struct{}) {
	defer close(stopped)
	for first := range ch {
		batch := []*appendReq{first}
	drain:
		for len(batch) < maxBatch {
			select {
			case r, ok := <-ch:
				if !ok {
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		// The audit trail's write: the write queue's bound does not refuse
		// it (one at a time, here), so that a request refused for
		// back-pressure (store.ErrBusy) still leaves its AuditEvent.
		ctx, cancel := context.WithTimeout(store.WithAuditWrite(context.Background()), 30*time.Second)
		err := store.Retry(ctx, l.store, func(tx store.Tx) error {
			for _, r := range batch {
				if err := putAll(tx, r.evs); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil && len(batch) > 1 {
			// Find out whose record failed: each alone.
			for _, r := range batch {
				r.done <- store.Retry(ctx, l.store, func(tx store.Tx) error { return putAll(tx, r.evs) })
			}
		} else {
			for _, r := range batch {
				r.done <- err
			}
		}
		cancel()
	}
}

// patientsPerEvent bounds the patients one AuditEvent names: a request
// that concerned more (the download of a bulk export file) leaves further
// AuditEvents of the same request, each naming the next patients, so that
// every patient is named and no record grows without bound.
const patientsPerEvent = 1000

// split makes of first, a request's record, its AuditEvents: one, or one
// per patientsPerEvent patients, the first naming everything else too,
// each saying which part it is.
func split(first audit.Record) []audit.Record {
	if len(first.Patients) <= patientsPerEvent {
		return []audit.Record{first}
	}
	all, desc := first.Patients, first.Description
	parts := (len(all) + patientsPerEvent - 1) / patientsPerEvent
	out := make([]audit.Record, 0, parts)
	for i := 0; i < parts; i++ {
		lo, hi := i*patientsPerEvent, min((i+1)*patientsPerEvent, len(all))
		r := first
		if i > 0 {
			r = first.SameRequest(store.NewID())
		}
		r.Patients = all[lo:hi]
		r.Description = fmt.Sprintf("part %d of %d, patients %d to %d of %d", i+1, parts, lo+1, hi, len(all))
		if desc != "" {
			r.Description = desc + " (" + r.Description + ")"
		}
		out = append(out, r)
	}
	return out
}

// record builds sc's AuditEvent record.
func (l *Log) record(sc *Scope, status int) audit.Record {
	entities := sc.entities.list
	if sc.covered != nil || sc.written != nil {
		entities = make([]audit.Entity, 0, len(sc.entities.list))
		for _, e := range sc.entities.list {
			if !sc.covered[e] {
				e.SHA256 = sc.written[e]
				entities = append(entities, e)
			}
		}
	}
	if len(entities) == 0 && status >= 400 && sc.Target.Type != "" {
		// A failed instance interaction still names its target.
		entities = []audit.Entity{sc.Target}
	}
	if len(sc.refused.list) > 0 {
		entities = slices.Clip(entities) // appended to, never into the scope's own list
		for _, r := range sc.refused.list {
			if !slices.ContainsFunc(entities, func(e audit.Entity) bool { return e.Type == r.Type && e.ID == r.ID }) {
				entities = append(entities, r)
			}
		}
	}
	desc := sc.Description
	if rules := failureDescription(status, sc.Rules); rules != "" {
		desc = rules // the rule ids of the failure; the token endpoint sets its own
	}
	return audit.Record{
		ID: store.NewID(), Recorded: l.now(), Interaction: sc.Interaction, Status: status, NoHTTP: sc.NoHTTP,
		ClientID: sc.ClientID, Unauthenticated: sc.ClientID == "" && sc.AuthRequired, ClientAddr: sc.Addr, Observer: l.observer, Tenant: sc.Tenant,
		Patients: sc.patients.list, Entities: entities, Identified: sc.identified, Action: sc.action,
		Recipient: sc.Recipient, RequestID: sc.RequestID, TraceID: sc.TraceID, Description: desc,
		PeriodStart: sc.periodStart, PeriodEnd: sc.periodEnd, Attempt: sc.attempt,
	}
}

// failureDescription names the rules a failed request broke: rule ids are
// fixed strings of the gateway, never request content. A client's mistake
// (4xx) was "rejected", the gateway's own failure (5xx) "failed".
func failureDescription(status int, rules []string) string {
	if len(rules) == 0 {
		return ""
	}
	verb := "rejected: "
	if status >= 500 {
		verb = "failed: "
	}
	if len(rules) > 5 {
		return fmt.Sprintf("%s%s and %d more", verb, strings.Join(rules[:5], ", "), len(rules)-5)
	}
	return verb + strings.Join(rules, ", ")
}
