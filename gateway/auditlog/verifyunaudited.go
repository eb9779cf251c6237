package auditlog

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// The other way round: every delivery attempt the outbox holds must be
// named by a delivery-send AuditEvent (committed before the attempt's
// row). One that none names was sent by a gateway that did not audit it:
// a release from before delivery auditing left running past an upgrade
// (p44 F1: an old replica delivered 225 records, none audited, and verify
// said nothing), or the chain lost the AuditEvent. Attempts begun before
// the trail's first delivery-send AuditEvent predate auditing: counted
// apart (LineageCheck.BeforeAuditing), not faults.

// attemptKey is one attempt: its outbox row and number.
type attemptKey struct {
	item int64
	n    int
}

func compareAttempts(a, b attemptKey) int {
	if c := cmp.Compare(a.item, b.item); c != 0 {
		return c
	}
	return cmp.Compare(a.n, b.n)
}

// sentNames are the attempts the delivery-send AuditEvents walked name.
// A full walk names every attempt of the trail, millions: they are kept
// in a slice, sorted when first looked up, 18.5 bytes an attempt held
// (BenchmarkSentNames: 1.5 million filled and each looked up in 0.7 s);
// a map held 37 bytes an attempt and took 1.1 s.
type sentNames struct {
	named  []attemptKey
	sorted int // named[:sorted] is sorted and without repeats
	// unnumbered counts, per outbox row, the delivery-send AuditEvents
	// of an older gateway that name the delivery but not the attempt: each
	// vouches for one attempt of it.
	unnumbered map[int64]int
	// first is when the earliest delivery-send AuditEvent walked was
	// recorded (zero: none).
	first time.Time
}

// add notes that AuditEvent e (its body's recorded time at) names attempt
// n (0: not numbered) of outbox row item.
func (s *sentNames) add(item int64, n int, at time.Time) {
	if n > 0 {
		s.named = append(s.named, attemptKey{item, n})
	} else {
		if s.unnumbered == nil {
			s.unnumbered = map[int64]int{}
		}
		s.unnumbered[item]++
	}
	if !at.IsZero() && (s.first.IsZero() || at.Before(s.first)) {
		s.first = at
	}
}

// vouched reports whether attempt a is named, taking an unnumbered
// AuditEvent of its delivery if need be.
func (s *sentNames) vouched(a *store.Attempt) bool {
	if s.sorted < len(s.named) {
		// Names added since the last lookup (the AuditEvents committed
		// while verify ran, after the walk's).
		slices.SortFunc(s.named, compareAttempts)
		s.named = slices.Compact(s.named)
		s.sorted = len(s.named)
	}
	if _, ok := slices.BinarySearchFunc(s.named, attemptKey{a.ItemID, a.N}, compareAttempts); ok {
		return true
	}
	if s.unnumbered[a.ItemID] > 0 {
		s.unnumbered[a.ItemID]--
		return true
	}
	return false
}

// rowOf is the outbox row a delivery-send AuditEvent's delivery value
// names: a public id, or the row's number an AuditEvent written before
// the public ids names. 0: none.
func (c *lineageChecker) rowOf(ctx context.Context, delivery string) (int64, error) {
	ids, err := c.ids.get(ctx)
	if err != nil {
		return 0, err
	}
	if row, ok := ids.Decode(delivery); ok {
		return row, nil
	}
	if row, err := strconv.ParseInt(delivery, 10, 64); err == nil && row > 0 {
		return row, nil
	}
	return 0, nil
}

// notSent reports whether attempt a ended before any request left (the
// destination's filter refused it, or it had nothing to send: the
// delivery worker's notSent): no transmission, so no AuditEvent.
func notSent(a *store.Attempt) bool {
	return a.HTTPStatus == 0 && (strings.HasPrefix(a.Error, store.NotSent) || strings.HasPrefix(a.Error, store.Refused))
}

// anchorMargin is how long after a walk's anchor was recorded an attempt
// may begin whose delivery-send AuditEvent was still committed before the
// anchor's, and so is not walked: an AuditEvent waits in the write queue
// (batched) and replicas' clocks differ, as an attempt's time is its own
// gateway's. A claim's lease (30 s) bounds both where clocks are kept
// synchronised.
const anchorMargin = 30 * time.Second

// maxNamedDeliveries bounds the deliveries the summary names.
const maxNamedDeliveries = 5

// checkUnaudited pages through the outbox's attempts (from the anchor's
// time for a walk from an anchor) and reports each one no delivery-send
// AuditEvent names. walkedTo is the last record the walk read: an attempt
// whose AuditEvent was committed after it (an attempt recorded while
// verify ran) is found by reading the chain on from there once the
// attempts have been read (their AuditEvents were committed before them).
func (c *lineageChecker) checkUnaudited(ctx context.Context, walkedTo int64) error {
	// When delivery auditing began: an unnamed attempt begun before it
	// is counted apart, and not held as a suspect (a long history from
	// before delivery auditing would be held whole).
	first := c.sent.first
	if !c.fromAt.IsZero() {
		// From an anchor: the trail may have audited deliveries since
		// before it.
		evs, err := searchAll(ctx, c.st, search.AllTenants, "AuditEvent", url.Values{"subtype": {"delivery-send"}, "_sort": {"date"}}, 1)
		if err != nil {
			return fmt.Errorf("the first delivery-send AuditEvent: %w", err)
		}
		if len(evs) > 0 {
			recorded, _ := evs[0]["recorded"].(string)
			if at, err := time.Parse(time.RFC3339Nano, recorded); err == nil && (first.IsZero() || at.Before(first)) {
				first = at
			}
		}
	}
	lc := &c.out.Lineage
	var left, before []*store.Attempt
	var after *store.Attempt
	for {
		page, err := c.st.AttemptsAfter(ctx, after, c.fromAt, 1000)
		if err != nil {
			return err
		}
		for _, a := range page {
			switch {
			case notSent(a) || c.sent.vouched(a):
			case first.IsZero() || a.At.Before(first):
				// Before delivery auditing began (or a trail that has
				// never audited one), by its time: counted, not held,
				// unless its record says otherwise (below).
				before = append(before, a)
			case !c.fromAt.IsZero() && a.At.Before(c.fromAt.Add(anchorMargin)):
				// Its AuditEvent may precede the anchor's, not walked.
				lc.NearAnchor++
			default:
				left = append(left, a)
			}
		}
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1]
	}
	// An attempt's own time does not exempt it (an auditor's review: the
	// chain's delivery-sends cut and the attempt back-dated, or all of
	// them cut, passed as before auditing): one whose record was received
	// by a release that audits deliveries (its receipt named with its hash)
	// is held like any other.
	ids, err := c.ids.get(ctx)
	if err != nil {
		return err
	}
	for _, a := range before {
		audited, err := c.auditedRelease(ctx, ids.Encode(a.ItemID))
		if err != nil {
			return err
		}
		if audited {
			left = append(left, a)
		} else {
			lc.BeforeAuditing++
		}
	}
	if len(left) == 0 {
		return nil
	}
	// The AuditEvents committed since the walk (attempts recorded
	// meanwhile): names only.
	err = c.st.AuditChainAfter(ctx, walkedTo, func(e audit.ChainEntry) error {
		if !bytes.Contains(e.Body, markSent) {
			return nil
		}
		var ev chainedEvent
		if json.Unmarshal(e.Body, &ev) != nil || len(ev.Subtype) == 0 || ev.Subtype[0].Code != "delivery-send" {
			return nil
		}
		return c.nameSent(ctx, ev.Recorded, ev.sent())
	})
	if err != nil {
		return err
	}
	for _, a := range left {
		if c.sent.vouched(a) {
			continue
		}
		id := ids.Encode(a.ItemID)
		lc.Unaudited++
		if len(c.out.unauditedDeliveries) < maxNamedDeliveries && !slices.Contains(c.out.unauditedDeliveries, id) {
			c.out.unauditedDeliveries = append(c.out.unauditedDeliveries, id)
		}
		c.out.lineageFault(0, "", fmt.Sprintf("delivery %s attempt %d", id, a.N), UnauditedProblem)
	}
	return nil
}

// auditedRelease reports whether the record the delivery of public id
// sends was received by a release that audits its deliveries: its
// receipt (audit.RecordProvenanceID of the outbox row's record version)
// is named with its hash by a chained AuditEvent the walk read.
func (c *lineageChecker) auditedRelease(ctx context.Context, public string) (bool, error) {
	d, err := c.delivery(ctx, public)
	if err != nil || d.item == nil || d.item.RecordID == "" {
		return false, err
	}
	it := d.item
	return c.hashed.has(audit.RecordProvenanceID(it.Tenant, it.Source, it.Kind, it.RecordID, it.Version)), nil
}

// UnauditedProblem is the fault of an attempt no AuditEvent names.
const UnauditedProblem = "no delivery-send AuditEvent names this attempt, though the trail audits deliveries since before it " +
	"(or a release that audits them received its record): the audit chain lost the AuditEvent (its tail cut and the head moved " +
	"back), or a gateway that did not audit it sent the record (a release from before delivery auditing left running past an " +
	"upgrade: stop every gateway older than the database's schema)"

// nameSent notes the attempt a delivery-send AuditEvent recorded at
// recorded names (its delivery's outbox row and attempt number).
func (c *lineageChecker) nameSent(ctx context.Context, recorded string, sent sentAttempt) error {
	if sent.delivery == "" {
		return nil
	}
	row, err := c.rowOf(ctx, sent.delivery)
	if err != nil || row == 0 {
		return err
	}
	at, _ := time.Parse(time.RFC3339Nano, recorded)
	c.sent.add(row, sent.n, at)
	return nil
}
