package gateway

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// The operator API (JSON, docs/operations.md): deliveries by status,
// destination, patient and time; one delivery with every attempt; retry
// of a dead letter; replay of a destination since a time; readiness.

// DeliveryView is a delivery as the operator API shows it. The payload
// (the FHIR Bundle, which is PHI) is shown only on request.
type DeliveryView struct {
	ID          int64           `json:"id"`
	Destination string          `json:"destination"`
	Status      string          `json:"status"`
	Kind        string          `json:"kind"`
	Source      string          `json:"source"`
	RecordID    string          `json:"recordId"`
	Version     string          `json:"version"`
	Patient     string          `json:"patient"`
	TraceID     string          `json:"traceId,omitempty"`
	Attempts    int             `json:"attempts"`
	NextAttempt time.Time       `json:"nextAttempt"`
	LastError   string          `json:"lastError,omitempty"`
	Created     time.Time       `json:"created"`
	Updated     time.Time       `json:"updated"`
	History     []AttemptView   `json:"attemptHistory,omitempty"`
	Payload     json.RawMessage `json:"payload,omitempty"`
}

// AttemptView is one delivery attempt.
type AttemptView struct {
	N          int             `json:"n"`
	At         time.Time       `json:"at"`
	DurationMS int64           `json:"durationMs"`
	HTTPStatus int             `json:"httpStatus,omitempty"`
	Error      string          `json:"error,omitempty"`
	TraceID    string          `json:"traceId,omitempty"`
	Outcome    json.RawMessage `json:"ehrResponse,omitempty"`
}

// ViewDelivery converts a stored item (and its attempts) for display.
func ViewDelivery(it *store.OutboxItem, attempts []*store.Attempt, withPayload bool) DeliveryView {
	v := DeliveryView{ID: it.ID, Destination: it.Destination, Status: it.Status, Kind: it.Kind, Source: it.Source,
		RecordID: it.RecordID, Version: it.Version, Patient: it.Patient, TraceID: it.TraceID, Attempts: it.Attempts,
		NextAttempt: it.NextAttempt, LastError: it.LastError, Created: it.Created, Updated: it.Updated}
	for _, a := range attempts {
		av := AttemptView{N: a.N, At: a.At, DurationMS: a.Duration.Milliseconds(), HTTPStatus: a.HTTPStatus, Error: a.Error, TraceID: a.TraceID}
		if json.Valid(a.Outcome) {
			av.Outcome = a.Outcome
		}
		v.History = append(v.History, av)
	}
	if withPayload {
		v.Payload = it.Payload
	}
	return v
}

// deliveryTenant is the DeliveryFilter.Tenant of the caller: its own
// tenant, or "" (every tenant) for an all-tenant operator and in
// development mode.
func deliveryTenant(c echo.Context) string {
	if t := tenantOf(c); t != search.AllTenants {
		return t
	}
	return ""
}

// outbox returns the store's outbox or a 501.
func (s *Server) outbox() (store.Outbox, error) {
	ob, ok := s.store.(store.Outbox)
	if !ok {
		return nil, errorf(http.StatusNotImplemented, "not-supported", "outbox-unavailable", "this store keeps no outbox")
	}
	return ob, nil
}

func (s *Server) handleListDeliveries(c echo.Context) error {
	ob, err := s.outbox()
	if err != nil {
		return err
	}
	f := store.DeliveryFilter{Status: c.QueryParam("status"), Destination: c.QueryParam("destination"),
		Patient: c.QueryParam("patient"), Tenant: deliveryTenant(c)}
	if f.Since, err = timeParam(c, "since"); err != nil {
		return err
	}
	if f.Until, err = timeParam(c, "until"); err != nil {
		return err
	}
	if f.Limit, err = intParam(c, "limit"); err != nil {
		return err
	}
	if f.Offset, err = intParam(c, "offset"); err != nil {
		return err
	}
	items, err := ob.Deliveries(c.Request().Context(), f)
	if err != nil {
		return err
	}
	out := make([]DeliveryView, 0, len(items))
	for _, it := range items {
		out = append(out, ViewDelivery(it, nil, false))
	}
	return c.JSON(http.StatusOK, map[string]any{"deliveries": out})
}

func (s *Server) handleShowDelivery(c echo.Context) error {
	ob, err := s.outbox()
	if err != nil {
		return err
	}
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil {
		return errorf(http.StatusNotFound, "not-found", "delivery-unknown", "no such delivery")
	}
	it, attempts, err := ob.Delivery(c.Request().Context(), id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !visible(tenantOf(c), "", it.Tenant)) {
		return errorf(http.StatusNotFound, "not-found", "delivery-unknown", "no such delivery")
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, ViewDelivery(it, attempts, c.QueryParam("payload") == "true"))
}

func (s *Server) handleRetryDelivery(c echo.Context) error {
	ob, err := s.outbox()
	if err != nil {
		return err
	}
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil {
		return errorf(http.StatusNotFound, "not-found", "delivery-unknown", "no such delivery")
	}
	if it, _, err := ob.Delivery(c.Request().Context(), id); errors.Is(err, store.ErrNotFound) ||
		(err == nil && !visible(tenantOf(c), "", it.Tenant)) {
		return errorf(http.StatusNotFound, "not-found", "delivery-unknown", "no such delivery")
	} else if err != nil {
		return err
	}
	if err := ob.Retry(c.Request().Context(), id, s.now()); errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusConflict, "conflict", "delivery-not-dead", "only a dead letter can be retried")
	} else if err != nil {
		return err
	}
	s.notifyDelivery()
	return c.JSON(http.StatusOK, map[string]any{"id": id, "status": store.StatusPending})
}

func (s *Server) handleReplay(c echo.Context) error {
	ob, err := s.outbox()
	if err != nil {
		return err
	}
	dest := c.QueryParam("destination")
	since, err := timeParam(c, "since")
	if err != nil {
		return err
	}
	if dest == "" || since.IsZero() {
		return errorf(http.StatusBadRequest, "required", "parameter-missing", "replay needs destination and since")
	}
	if t := tenantOf(c); t != "" && t != search.AllTenants {
		return errorf(http.StatusForbidden, "forbidden", "tenant-replay", "a replay re-sends every tenant's records; it needs an all-tenant operator")
	}
	n, err := ob.Replay(c.Request().Context(), dest, since, s.now())
	if err != nil {
		return err
	}
	s.notifyDelivery()
	return c.JSON(http.StatusOK, map[string]any{"destination": dest, "since": since, "replayed": n})
}

// handleReady is the readiness probe: the database answers, and the
// delivery backlog and oldest pending age per destination.
func (s *Server) handleReady(c echo.Context) error {
	ctx := c.Request().Context()
	if err := s.store.Ping(ctx); err != nil {
		c.Response().Header().Set("Retry-After", "5")
		return c.JSON(http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "database": "unavailable"})
	}
	body := map[string]any{"status": "ready", "database": "ok"}
	if ob, ok := s.store.(store.Outbox); ok {
		stats, err := ob.Stats(ctx)
		if err != nil {
			return err
		}
		var dests []map[string]any
		now := s.now()
		for _, st := range stats {
			d := map[string]any{"destination": st.Destination, "backlog": st.Pending, "dead": st.Dead, "oldestPendingAgeSeconds": 0.0}
			if !st.OldestPending.IsZero() {
				d["oldestPendingAgeSeconds"] = now.Sub(st.OldestPending).Seconds()
			}
			dests = append(dests, d)
		}
		body["deliveries"] = dests
	}
	return c.JSON(http.StatusOK, body)
}

func timeParam(c echo.Context, name string) (time.Time, error) {
	v := c.QueryParam(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, errorf(http.StatusBadRequest, "invalid", "parameter-invalid", name+" must be an RFC 3339 time")
	}
	return t, nil
}

func intParam(c echo.Context, name string) (int, error) {
	v := c.QueryParam(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, errorf(http.StatusBadRequest, "invalid", "parameter-invalid", name+" must be a non-negative integer")
	}
	return n, nil
}
