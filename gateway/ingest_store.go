package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/telemetry"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// storeRecord stores a mapped native record in one transaction together
// with its ledger entry, and answers the transaction-response. It is
// idempotent on (source system, kind, record id, version): the same record
// again changes nothing and gets the first answer again; the same version
// with other content is a 409; a new version of a stored record updates its
// resources (conditional updates, Observations amended).
func (s *Server) storeRecord(c echo.Context, kind mapping.Kind, body []byte, first *mapping.Result, firstRaws [][]byte) error {
	hash, err := contentHash(body)
	if err != nil {
		return err
	}
	src := first.Source
	version := src.Version
	if version == "" {
		version = src.LastUpdated
	}
	now := s.now()
	var answer []byte
	err = s.stage(c.Request().Context(), "store.transaction", func(ctx context.Context) error {
		return s.writeAudited(c, ctx, func(tx store.Tx) (int, error) {
			return http.StatusOK, s.storeRecordTx(ctx, c, tx, kind, body, first, firstRaws, hash, version, now, &answer)
		})
	}, attribute.String("ingest.kind", string(kind)), attribute.Int("fhir.entry_count", len(first.Entries)))
	if err != nil {
		return err
	}
	s.notifyDelivery()
	return c.Blob(http.StatusOK, ContentTypeFHIR, answer)
}

// storeRecordTx is storeRecord's database transaction; it sets *out to
// the answer. firstRaws are first's validated resources (ValidateMapped).
func (s *Server) storeRecordTx(ctx context.Context, c echo.Context, tx store.Tx, kind mapping.Kind, body []byte, first *mapping.Result,
	firstRaws [][]byte, hash, version string, now time.Time, out *[]byte) error {
	src := first.Source
	l, err := tx.Ledger(src.System, string(kind), src.RecordID, version)
	switch {
	case err == nil && l.ContentHash == hash:
		*out = l.Response
		auditOf(c).description = fmt.Sprintf("%s record version already received: nothing written", kind)
		return nil
	case err == nil:
		return errorf(http.StatusConflict, "conflict", "record-version-reused",
			"this source record version was already received with different content; send a new version")
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	res, raws := first, firstRaws
	tenant := tenantOf(c)
	stored, err := s.recordStored(tx, tenant, first)
	if err != nil {
		return err
	}
	if stored {
		// A new version: mapped again in update mode, and validated too.
		opts := s.pipeline.opts
		opts.Update = true
		if res, err = s.pipeline.MapValid(kind, body, opts); err != nil {
			return err
		}
		if raws, err = s.pipeline.ValidateMapped(res); err != nil {
			return err
		}
	}
	entries, err := s.resultEntries(res, raws, tenant)
	if err != nil {
		return err
	}
	if err := s.runTransaction(tx, entries, now); err != nil {
		return err
	}
	touchEntries(c, entries, nil)
	activity := "CREATE"
	if stored {
		activity = "UPDATE"
	}
	err = s.putProvenance(c, tx, audit.Provenance{
		ID:       provenanceID(tenant, src.System, string(kind), src.RecordID, version),
		Activity: activity, Source: src.System, MappingVersion: mapping.Version,
		WhatSystem: recordSystem(s.pipeline.opts.IdentifierBase, src.System, string(kind)), WhatValue: src.RecordID,
		WhatDisplay: fmt.Sprintf("%s record version %s", kind, version), ContentHash: hash,
		RecordKind: string(kind), RecordVersion: version,
	}, written(entries, nil), now)
	if err != nil {
		return err
	}
	auditOf(c).description = fmt.Sprintf("%s record: %d entries", kind, len(entries))
	answer, err := json.Marshal(s.responseBundle(c, "transaction-response", entries, nil))
	if err != nil {
		return err
	}
	err = s.stage(ctx, "outbox.enqueue", func(context.Context) error {
		return s.enqueue(tx, tenantOf(c), kind, res, version, telemetry.TraceID(ctx))
	}, attribute.String("ingest.kind", string(kind)))
	if err != nil {
		return err
	}
	*out = answer
	return tx.PutLedger(&store.Ledger{Source: src.System, Kind: string(kind), RecordID: src.RecordID, Version: version,
		ContentHash: hash, Response: answer, Received: now.UTC()})
}

// recordSystem is the identifier system of source records of one kind
// from one clinic system, as Provenance.entity names them:
// <identifier base>/<source>/<kind>-record ("" base: the default).
func recordSystem(base, source, kind string) string {
	if base == "" {
		base = mapping.DefaultIdentifierBase
	}
	return strings.TrimRight(base, "/") + "/" + source + "/" + kind + "-record"
}

// provenanceID is the id of the Provenance of one record version: the same
// version always has the same one.
func provenanceID(tenant, source, kind, recordID, version string) string {
	sum := sha256.Sum256([]byte(tenant + "|" + source + "|" + kind + "|" + recordID + "|" + version))
	return "rec-" + hex.EncodeToString(sum[:16])
}

// enqueue puts the mapped record in the outbox of every route that accepts
// it, inside the transaction that stores it. The payload is the mapped
// transaction Bundle: its entries are conditional on identifiers (or PUT to
// deterministic ids), so a re-send never duplicates anything at the EHR.
func (s *Server) enqueue(tx store.Tx, tenant string, kind mapping.Kind, res *mapping.Result, version, traceID string) error {
	var items []*store.OutboxItem
	var payload []byte
	for _, r := range s.cfg.Routes {
		if !r.Accepts(string(kind), res.Source.System) || (r.AcceptsTenant != nil && !r.AcceptsTenant(tenant)) {
			continue
		}
		if payload == nil {
			b, err := res.Transaction()
			if err != nil {
				return err
			}
			if payload, err = json.Marshal(b); err != nil {
				return err
			}
		}
		patient := ""
		if len(res.Entries) > 0 && res.Entries[0].ResourceType == "Patient" {
			patient = res.Entries[0].IdentifierValue
		}
		items = append(items, &store.OutboxItem{
			Destination: r.Name, OrderKey: res.Source.System + "|" + string(kind) + "|" + res.Source.RecordID,
			Patient: res.Source.System + "|" + patient, Kind: string(kind), Source: res.Source.System,
			RecordID: res.Source.RecordID, Version: version, Payload: payload, TraceID: traceID,
		})
	}
	if len(items) == 0 {
		return nil
	}
	otx, ok := tx.(store.OutboxTx)
	if !ok {
		return fmt.Errorf("enqueue %s record: the store keeps no outbox", kind)
	}
	return otx.Enqueue(items...)
}

// recordStored reports whether the record's main resource (the first
// entry after the Patient) is already stored: then this is a new version.
func (s *Server) recordStored(tx store.Tx, tenant string, res *mapping.Result) (bool, error) {
	for _, e := range res.Entries {
		if e.ResourceType == "Patient" {
			continue
		}
		if e.ResourceType == "AdverseEvent" { // deterministic id
			_, err := tx.Read("AdverseEvent", tenantID(tenant, e.URL[len("AdverseEvent/"):]))
			switch {
			case err == nil:
				return true, nil
			case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrGone):
				return false, nil
			default:
				return false, err
			}
		}
		q, err := search.ParseConditional(e.ResourceType, "identifier="+e.IdentifierSystem+"|"+e.IdentifierValue)
		if err != nil {
			return false, fmt.Errorf("identifier query of a mapped %s: %w", e.ResourceType, err)
		}
		page, err := tx.Search(q)
		if err != nil {
			return false, err
		}
		return len(page.Matches) > 0, nil
	}
	return false, nil
}

// resultEntries turns mapped entries into transaction entries.
func (s *Server) resultEntries(res *mapping.Result, raws [][]byte, tenant string) ([]*txEntry, error) {
	out := make([]*txEntry, len(res.Entries))
	for i, e := range res.Entries {
		w := wireEntry{FullURL: e.FullURL}
		url := e.URL
		if raw := raws[i]; raw != nil {
			// A deterministic id (PUT Type/id) is the tenant's own.
			if typ, id, ok := strings.Cut(e.URL, "/"); ok && tenant != "" && e.Method.Code() == "PUT" && !strings.Contains(id, "?") {
				url = typ + "/" + tenantID(tenant, id)
				var err error
				if raw, err = setID(raw, tenantID(tenant, id)); err != nil {
					return nil, err
				}
			}
			w.Resource = raw
		}
		w.Request = &struct {
			Method      string `json:"method"`
			URL         string `json:"url"`
			IfNoneExist string `json:"ifNoneExist"`
			IfMatch     string `json:"ifMatch"`
		}{Method: e.Method.Code(), URL: url, IfNoneExist: e.IfNoneExist}
		out[i] = s.parseEntry(i, &w)
		if out[i].perr != nil {
			return nil, fmt.Errorf("mapped entry %d: %w", i, out[i].perr)
		}
	}
	return out, nil
}

// tenantID is the id, in tenant's namespace, of a resource the mappings
// give a deterministic id: tenants sending the same record ids never
// collide (the default tenant keeps the mapping's id). The EHR still gets
// the mapping's own id.
func tenantID(tenant, id string) string {
	if tenant == "" {
		return id
	}
	h := sha256.Sum256([]byte(tenant + "|" + id))
	h[6], h[8] = (h[6]&0x0f)|0x50, (h[8]&0x3f)|0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// setID replaces the id of a JSON resource.
func setID(raw []byte, id string) ([]byte, error) {
	doc, err := decodeJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("mapped resource: %w", err)
	}
	doc["id"] = id
	return json.Marshal(doc)
}

// contentHash is the SHA-256 of the record's canonical JSON (keys sorted,
// insignificant white space removed), so a re-sent record with other
// formatting is recognised as the same.
func contentHash(body []byte) (string, error) {
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return "", fmt.Errorf("canonicalise record: %w", err)
	}
	canon, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("canonicalise record: %w", err)
	}
	sum := sha256.Sum256(canon)
	return hex.EncodeToString(sum[:]), nil
}
