package auditlog

import (
	"context"
	"fmt"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// Sent is one attempt to send a record to an EHR, as the delivery worker
// makes it.
type Sent struct {
	// Delivery is the delivery's public id (operator.IDs), Destination
	// the EHR's name in the configuration.
	Delivery, Destination string
	// Item is the outbox item sent (its payload is hashed, not read
	// otherwise).
	Item *store.OutboxItem
	// Attempt is the attempt, as recorded.
	Attempt *store.Attempt
	// Outcome is the worker's verdict: "done", "retry", "dead" or
	// "interrupted" (an attempt whose worker stopped before recording it,
	// recorded by the next: it may have been delivered).
	Outcome string
	// EntryStatus is the status of the entry that failed when the EHR
	// answered a batch or transaction 2xx (delivery.Result.EntryStatus);
	// 0 otherwise.
	EntryStatus int
}

// AppendSent commits the AuditEvent of an attempt to send a record to an
// EHR (DICOM 110106 Export, subtype delivery-send) and returns when it is
// durable: the gateway is the requesting agent, the destination the other;
// it names the delivery, the destination, the source record, its
// Provenance and its patients, in the record's tenant, with the EHR's HTTP
// status (502 for an attempt without an answer; the failed entry's for a
// batch- or transaction-response the EHR answered 2xx, whose status the
// description and the attempt's details keep) and the attempt's trace.
// The delivery worker calls it before it records the attempt, so that no
// transmission the outbox records lacks its AuditEvent (a crash in between
// sends the record again, audited again; a crash during the send leaves an
// attempt the next worker records and audits as interrupted). base is the deployment's
// identifier namespace. No content of the record is read or written.
//
// The AuditEvent carries the attempt as the outbox records it, so that the
// hash chain vouches for it (`audit verify` compares the outbox's row):
// on the delivery's entity its number, the EHR's HTTP status, the SHA-256
// of the payload sent and of the answer recorded, and its error
// (audit.Attempt); its period is when the attempt ran (from its start to
// the answer; an interrupted attempt's start only, when it was claimed),
// which for an interrupted attempt is long before it is recorded.
func (l *Log) AppendSent(ctx context.Context, st store.Store, base string, s Sent) error {
	if l.disabled {
		return nil
	}
	it, a := s.Item, s.Attempt
	sc := &Scope{Interaction: "delivery-send", Tenant: it.Tenant, Recipient: s.Destination, TraceID: a.TraceID}
	if sc.TraceID == "" {
		sc.TraceID = it.TraceID
	}
	if err := nameDelivered(ctx, st, sc, base, s.Delivery, it.Tenant, it.Source, it.Kind, it.RecordID, it.Version); err != nil {
		return err
	}
	sc.NameIn(it.Tenant, nameDestination(s.Destination))
	verdict := map[string]string{"done": "delivered", "retry": "not delivered, to be retried", "dead": "not delivered, a dead letter",
		"interrupted": "interrupted: the gateway stopped, or could not record it, before its answer was recorded; the EHR may have received the record, which is sent again"}[s.Outcome]
	if verdict == "" {
		verdict = s.Outcome
	}
	status := a.HTTPStatus
	entry := 0 // the failed entry's status in a 2xx answer
	if s.Outcome != "done" && status >= 200 && status < 300 {
		entry = s.EntryStatus
	}
	switch {
	case entry != 0:
		status = entry // the EHR answered 2xx, an entry of it failed: its status is the outcome's
	case status == 0 || (s.Outcome != "done" && status < 400):
		status = 502 // Bad Gateway: no answer, or one the worker did not take (auditlog knows no HTTP)
	}
	sc.Description = fmt.Sprintf("delivery %s to %s: attempt %d: %s", s.Delivery, s.Destination, a.N, verdict)
	sc.attempt = &audit.Attempt{N: a.N, HTTPStatus: a.HTTPStatus, PayloadSHA256: audit.SHA256(it.Payload),
		AnswerSHA256: audit.SHA256(a.Outcome), Error: a.Error}
	// As the outbox stores them: at and the duration in whole ms.
	sc.periodStart = a.At.Truncate(time.Millisecond)
	if s.Outcome != "interrupted" {
		sc.periodEnd = sc.periodStart.Add(a.Duration.Truncate(time.Millisecond))
	}
	if s.Outcome != "done" && s.Outcome != "interrupted" && a.Error != "" {
		if entry != 0 {
			sc.Description += fmt.Sprintf(" (the EHR answered http %d; %s)", a.HTTPStatus, a.Error)
		} else {
			sc.Description += " (" + a.Error + ")" // PHI-free: "http 503", "timeout", ...
		}
	}
	return l.Append(sc, status)
}

// nameDestination names an EHR destination by its configured name.
func nameDestination(name string) audit.Identified {
	return audit.Identified{System: audit.SystemDestination, Value: name, Description: "the destination"}
}
