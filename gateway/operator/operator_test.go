package operator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/operator"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

func openStore(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "gw.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// enqueue queues one delivery of record (version) to dest and, when
// status is done or dead, sends it so (claims and completes it).
func enqueue(t *testing.T, st store.Store, dest, record, version, status string) int64 {
	t.Helper()
	ctx := context.Background()
	it := &store.OutboxItem{Destination: dest, OrderKey: "src|session|" + record, Patient: "src|P", Kind: "session",
		Source: "src", RecordID: record, Version: version, Payload: []byte(`{}`)}
	if err := st.Write(ctx, func(tx store.Tx) error { return tx.Enqueue(it) }); err != nil {
		t.Fatal(err)
	}
	if status == store.StatusPending {
		return it.ID
	}
	got, err := st.Claim(ctx, dest, time.Now().Add(time.Second), time.Minute, 1)
	if err != nil || len(got) != 1 || got[0].ID != it.ID {
		t.Fatalf("Claim = %v %v, want item %d", got, err, it.ID)
	}
	if err := st.Complete(ctx, &store.Attempt{ItemID: it.ID, At: time.Now(), HTTPStatus: 200}, status, time.Time{}); err != nil {
		t.Fatal(err)
	}
	return it.ID
}

// TestReadyShowsHoldsAndUnconfiguredDestinations: /readyz's backlog says
// until when a destination is held, marks the destinations with
// deliveries pending or dead that the serving gateway does not have
// (Unconfigured: those with deliveries pending, which nothing sends), and
// lists every configured destination, one without deliveries with zeros
// (an EHR review: a renamed destination's dead letters showed as any
// other's, and the new one not at all).
func TestReadyShowsHoldsAndUnconfiguredDestinations(t *testing.T) {
	st := openStore(t)
	enqueue(t, st, "hosp", "R1", "1", store.StatusPending)
	enqueue(t, st, "old", "R2", "1", store.StatusPending)
	enqueue(t, st, "gone", "R3", "1", store.StatusDone)    // nothing pending: nothing lost
	enqueue(t, st, "renamed", "R4", "1", store.StatusDead) // its dead letters
	until := time.Now().Add(time.Minute).UTC()
	for _, tc := range []struct {
		name       string
		dests      []string
		wantStale  []string
		wantUnsent int
		wantHeld   bool
		wantNew    bool
	}{
		{"serving", []string{"hosp", "new"}, []string{"old", "renamed"}, 1, true, true},
		{"a command on the database", nil, nil, 0, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ops := operator.New(st, tc.dests, nil, nil)
			if tc.dests != nil {
				ops.SetWorker(&fakeWorker{holds: map[string]time.Time{"hosp": until}})
			}
			r, err := ops.Ready(context.Background())
			if err != nil || !r.Ready {
				t.Fatalf("Ready = %+v %v", r, err)
			}
			var stale []string
			listed := false
			for _, b := range r.Backlog {
				if b.NotConfigured {
					stale = append(stale, b.Destination)
				}
				if b.Destination == "new" {
					listed = b.Pending == 0 && b.Dead == 0 && !b.NotConfigured
				}
				held := b.HeldUntil != nil && b.HeldUntil.Equal(until)
				if want := tc.wantHeld && b.Destination == "hosp"; held != want {
					t.Errorf("%s: heldUntil %v, want held %v", b.Destination, b.HeldUntil, want)
				}
			}
			slices.Sort(stale)
			if strings.Join(stale, ",") != strings.Join(tc.wantStale, ",") {
				t.Errorf("not configured: %v, want %v", stale, tc.wantStale)
			}
			if listed != tc.wantNew {
				t.Errorf("the configured destination without deliveries listed with zeros: %v, want %v (%+v)", listed, tc.wantNew, r.Backlog)
			}
			got, err := ops.Unconfigured(context.Background())
			if err != nil || len(got) != tc.wantUnsent {
				t.Errorf("Unconfigured = %+v %v, want %d", got, err, tc.wantUnsent)
			}
		})
	}
}

// TestReadyShowsCapabilityGaps: readiness lists what the delivery
// worker's capability check found wrong with each destination (resource
// types its CapabilityStatement does not support, a check that failed),
// also of a destination with no delivery yet, without making the gateway
// unready; [] when nothing is wrong, and nothing for a command on the
// database, which runs no worker.
func TestReadyShowsCapabilityGaps(t *testing.T) {
	st := openStore(t)
	since := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	gaps := []operator.CapabilityGap{
		{Destination: "hosp", Unsupported: []operator.UnsupportedType{{ResourceType: "DetectedIssue", MissingInteractions: []string{"create", "update"}}}},
		{Destination: "lab", CheckFailed: "metadata: http 503", CheckFailedSince: &since},
	}
	for _, tc := range []struct {
		name   string
		worker *fakeWorker
		want   string
	}{
		{"gaps", &fakeWorker{gaps: gaps}, `[{"destination":"hosp","unsupported":[{"resourceType":"DetectedIssue","listed":false,` +
			`"missingInteractions":["create","update"]}]},{"destination":"lab","checkFailed":"metadata: http 503",` +
			`"checkFailedSince":"2026-12-06T08:00:00Z"}]`},
		{"none", &fakeWorker{}, `[]`},
		{"no worker", nil, `null`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ops := operator.New(st, []string{"hosp", "lab"}, nil, nil)
			if tc.worker != nil {
				ops.SetWorker(tc.worker)
			}
			r, err := ops.Ready(context.Background())
			if err != nil || !r.Ready {
				t.Fatalf("Ready = %+v %v, want ready", r, err)
			}
			if b, _ := json.Marshal(r.CapabilityGaps); string(b) != tc.want {
				t.Errorf("Ready().CapabilityGaps = %s, want %s", b, tc.want)
			}
		})
	}
}

// TestReplayRefusesAnUnconfiguredDestination: a serving gateway does not
// queue a replay that no worker would send; a command on the database,
// which knows no configuration, replays to any destination delivered to.
func TestReplayRefusesAnUnconfiguredDestination(t *testing.T) {
	st := openStore(t)
	enqueue(t, st, "old", "R1", "1", store.StatusDone)
	since := time.Now().Add(-time.Hour)
	ops := operator.New(st, []string{"hosp"}, nil, nil)
	_, err := ops.Replay(context.Background(), search.AllTenants, "old", since)
	if kind, issues := outcome.From(err); kind != outcome.Invalid || len(issues) == 0 ||
		!strings.Contains(issues[0].Message, "not configured in this gateway") || !strings.Contains(issues[0].Message, "hosp") {
		t.Fatalf("Replay to a destination not configured = %v (%v %+v), want Invalid naming the configured ones", err, kind, issues)
	}
	if n, err := operator.New(st, nil, nil, nil).Replay(context.Background(), search.AllTenants, "old", since); err != nil || n != 1 {
		t.Fatalf("Replay on the database = %d %v, want 1", n, err)
	}
}

// TestViewSummarizesTheEHRAnswer: without payload=true the EHR's answer is
// shown without the resources it returned or the values its
// OperationOutcome quotes (PHI), keeping statuses, locations and issue
// codes; with payload=true it is shown whole.
func TestViewSummarizesTheEHRAnswer(t *testing.T) {
	const phi = "Quuxfamily900"
	for _, tc := range []struct {
		name, answer, want string
		withheld           int // texts and resources left out
	}{
		{"transaction-response with resources",
			`{"resourceType":"Bundle","type":"transaction-response","entry":[{"fullUrl":"x","resource":{"resourceType":"Patient","name":[{"family":"` + phi + `"}]},
			  "response":{"status":"201 Created","location":"Patient/1/_history/1","etag":"W/\"1\"","outcome":{"resourceType":"OperationOutcome","issue":[{"severity":"information","code":"informational","diagnostics":"created ` + phi + `"}]}}}]}`,
			`{"entry":[{"response":{"etag":"W/\"1\"","location":"Patient/1/_history/1","outcome":{"issue":[{"code":"informational","severity":"information"}],"resourceType":"OperationOutcome"},"status":"201 Created"}}],"resourceType":"Bundle","type":"transaction-response"}`, 2},
		{"OperationOutcome quoting values",
			`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"Patient ` + phi + ` echo",
			  "details":{"text":"` + phi + `","coding":[{"system":"urn:rules","code":"rule-1","display":"` + phi + `"}]},"expression":["Patient.name[0]"]}]}`,
			`{"issue":[{"code":"invalid","details":{"coding":[{"code":"rule-1","system":"urn:rules"}]},"expression":["Patient.name[0]"],"severity":"error"}],"resourceType":"OperationOutcome"}`, 3},
		{"another resource", `{"resourceType":"Patient","name":[{"family":"` + phi + `"}]}`, `{"resourceType":"Patient"}`, 1},
		{"nothing to leave out", `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","expression":["Patient"]}]}`,
			`{"issue":[{"code":"invalid","expression":["Patient"],"severity":"error"}],"resourceType":"OperationOutcome"}`, 0},
		{"not a resource", `{"name":"` + phi + `"}`, ``, 1},
		{"cut by the gateway", `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"` + phi + `"},` +
			`{"severity":"information","code":"too-costly","details":{"coding":[{"system":"` + store.AnswerNoteSystem + `","code":"` + store.AnswerTruncated + `"}]},"diagnostics":"the gateway kept the first 1 of the EHR's 9 issues (8 left out)"}]}`,
			`{"issue":[{"code":"invalid","severity":"error"},{"code":"too-costly","details":{"coding":[{"code":"ehr-answer-truncated","system":"` + store.AnswerNoteSystem + `"}]},"diagnostics":"the gateway kept the first 1 of the EHR's 9 issues (8 left out)","severity":"information"}],"resourceType":"OperationOutcome"}`, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			it := &store.OutboxItem{ID: 1, Status: store.StatusDone, Payload: []byte(`{}`)}
			attempts := []*store.Attempt{{N: 1, HTTPStatus: 200, Outcome: []byte(tc.answer)}}
			ids := operator.NewIDs([]byte("0123456789abcdef"))
			summary := operator.NewView(ids, it, attempts, false).History[0]
			if got := string(summary.Outcome); got != tc.want {
				t.Errorf("ehrResponse without payload = %s, want %s", got, tc.want)
			}
			if summary.Withheld != tc.withheld {
				t.Errorf("withheld without payload = %d, want %d", summary.Withheld, tc.withheld)
			}
			whole := operator.NewView(ids, it, attempts, true).History[0]
			if got := string(whole.Outcome); got != tc.answer {
				t.Errorf("ehrResponse with payload = %s, want the whole answer", got)
			}
			if whole.Withheld != 0 {
				t.Errorf("withheld with payload = %d, want 0", whole.Withheld)
			}
		})
	}
}

// fakeWorker is a delivery worker's holds and capability checks.
type fakeWorker struct {
	holds    map[string]time.Time
	released []string
	gaps     []operator.CapabilityGap
}

func (w *fakeWorker) Holds() map[string]time.Time { return w.holds }

func (w *fakeWorker) CapabilityGaps() []operator.CapabilityGap { return w.gaps }

func (w *fakeWorker) Release(dest string) bool {
	w.released = append(w.released, dest)
	_, ok := w.holds[dest]
	delete(w.holds, dest)
	return ok
}

// TestRetryMakesAPendingDeliveryDueNow: retry takes a pending delivery
// (waiting for its next attempt, maybe a long Retry-After) as well as a
// dead letter, and ends its destination's hold; one in flight or
// delivered is a Conflict.
func TestRetryMakesAPendingDeliveryDueNow(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	dead := enqueue(t, st, "hosp", "R2", "1", store.StatusDead)
	done := enqueue(t, st, "hosp", "R3", "1", store.StatusDone)
	pending := enqueue(t, st, "hosp", "R1", "1", store.StatusPending)
	w := &fakeWorker{holds: map[string]time.Time{"hosp": time.Now().Add(time.Hour)}}
	ops := operator.New(st, []string{"hosp"}, nil, nil)
	ops.SetWorker(w)
	ids, err := ops.IDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{ids.Encode(pending), ids.Encode(dead)} {
		if _, err := ops.Retry(ctx, "", id); err != nil {
			t.Fatalf("Retry(%s) = %v", id, err)
		}
		if v, err := ops.Show(ctx, search.AllTenants, id, false); err != nil || v.Status != store.StatusPending ||
			v.NextAttempt == nil || v.NextAttempt.After(time.Now()) {
			t.Fatalf("after Retry(%s): %+v %v, want pending and due", id, v, err)
		}
	}
	if len(w.released) != 2 || w.released[0] != "hosp" {
		t.Errorf("holds released: %v, want hosp twice", w.released)
	}
	_, err = ops.Retry(ctx, "", ids.Encode(done))
	if kind, _ := outcome.From(err); kind != outcome.Conflict {
		t.Errorf("Retry of a delivered one: %v, want Conflict", kind)
	}
}

// TestDeliveryIDsPublic: the operator service shows and takes a
// delivery's public id, never the row's number; a tenant's operator gets
// one answer, no such delivery, for another tenant's id, a row's number
// and a garbled id alike, and the ids of one tenant's consecutive
// deliveries do not show the other tenant's in between.
func TestDeliveryIDsPublic(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	rows := map[string][]int64{}
	for i, tenant := range []string{"clinic-a", "clinic-b", "clinic-b", "clinic-a"} {
		it := &store.OutboxItem{Destination: "hosp", OrderKey: fmt.Sprint("src|session|R", i), Patient: "src|P", Kind: "session",
			Source: "src", RecordID: fmt.Sprint("R", i), Version: "1", Payload: []byte(`{}`), Tenant: tenant}
		if err := st.Write(ctx, func(tx store.Tx) error { return tx.Enqueue(it) }); err != nil {
			t.Fatal(err)
		}
		rows[tenant] = append(rows[tenant], it.ID)
	}
	ops := operator.New(st, []string{"hosp"}, nil, nil)
	listed := map[string][]string{}
	for _, tenant := range []string{"clinic-a", "clinic-b"} {
		vs, err := ops.List(ctx, tenant, store.DeliveryFilter{})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vs {
			if _, err := strconv.ParseInt(v.ID, 10, 64); err == nil || len(v.ID) != operator.IDLength {
				t.Errorf("%s lists delivery id %q, want a public id of %d characters, not a number", tenant, v.ID, operator.IDLength)
			}
			if got, err := ops.Show(ctx, tenant, v.ID, false); err != nil || got.ID != v.ID || got.RecordID != v.RecordID {
				t.Errorf("%s: Show(%s) = %+v, %v; want the listed delivery", tenant, v.ID, got, err)
			}
			listed[tenant] = append(listed[tenant], v.ID)
		}
	}
	if len(listed["clinic-a"]) != 2 || len(listed["clinic-b"]) != 2 {
		t.Fatalf("listed %v, want two deliveries per tenant", listed)
	}
	for _, tc := range []struct{ tenant, id string }{
		{"clinic-a", listed["clinic-b"][0]}, // another tenant's
		{"clinic-b", listed["clinic-a"][1]},
		{"clinic-a", strconv.FormatInt(rows["clinic-a"][0], 10)}, // its own, by the row's number
		{"clinic-a", "not-an-id"},
		{"clinic-a", strings.ToUpper(listed["clinic-a"][0])},
	} {
		_, showErr := ops.Show(ctx, tc.tenant, tc.id, false)
		_, retryErr := ops.Retry(ctx, tc.tenant, tc.id)
		for _, err := range []error{showErr, retryErr} {
			kind, issues := outcome.From(err)
			if kind != outcome.NotFound || len(issues) != 1 || issues[0].Rule != "delivery-unknown" || err.Error() != showErr.Error() {
				t.Errorf("%s asking for %q: %v, want NotFound delivery-unknown, the same answer for show and retry", tc.tenant, tc.id, err)
			}
		}
	}
}

// TestCancelLetsTheNextVersionGo: a pending delivery the EHR keeps
// refusing holds back the record's later version; a retry of that later
// version (and its Show) names the delivery it waits for, and cancelling
// the first (with a reason) makes it a dead letter, "cancelled by
// operator: <reason>", after which the later version is claimed. A
// delivery in flight or delivered cannot be cancelled; a reason is
// required.
func TestCancelLetsTheNextVersionGo(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	done := enqueue(t, st, "hosp", "R9", "1", store.StatusDone)
	v1 := enqueue(t, st, "hosp", "R1", "1", store.StatusPending)
	v2 := enqueue(t, st, "hosp", "R1", "2", store.StatusPending)
	ops := operator.New(st, []string{"hosp"}, nil, nil)
	ids, err := ops.IDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id1, id2 := ids.Encode(v1), ids.Encode(v2)

	// A caller acting for every tenant reads the deliveries but changes
	// none (p17 F3): it could undo a clinic's cancel.
	if _, err := ops.Retry(ctx, search.AllTenants, id2); !slices.Contains(outcome.Rules(err), "tenant-required") {
		t.Errorf("Retry as every tenant = %v, want tenant-required", err)
	}
	if _, err := ops.Cancel(ctx, search.AllTenants, id2, "x"); !slices.Contains(outcome.Rules(err), "tenant-required") {
		t.Errorf("Cancel as every tenant = %v, want tenant-required", err)
	}
	waiting, err := ops.Retry(ctx, "", id2)
	if err != nil || waiting != id1 {
		t.Fatalf("Retry(v2) = %q, %v; want it to name %s, the delivery it waits for", waiting, err, id1)
	}
	if v, err := ops.Show(ctx, search.AllTenants, id2, false); err != nil || v.WaitingFor != id1 {
		t.Fatalf("Show(v2).WaitingFor = %q, %v; want %s", v.WaitingFor, err, id1)
	}
	if v, err := ops.Show(ctx, search.AllTenants, id1, false); err != nil || v.WaitingFor != "" {
		t.Fatalf("Show(v1).WaitingFor = %q, %v; want none", v.WaitingFor, err)
	}

	for _, tc := range []struct {
		name, id, reason string
		kind             outcome.Kind
		rule             string
	}{
		{"no reason", id1, " ", outcome.Invalid, "delivery-cancel-reason-missing"},
		{"two lines", id1, "a\nb", outcome.Invalid, "delivery-cancel-reason-invalid"},
		{"delivered", ids.Encode(done), "sent in error", outcome.Conflict, "delivery-not-cancellable"},
		{"unknown", "not-an-id", "x", outcome.NotFound, "delivery-unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ops.Cancel(ctx, "", tc.id, tc.reason)
			kind, issues := outcome.From(err)
			if kind != tc.kind || len(issues) != 1 || issues[0].Rule != tc.rule {
				t.Errorf("Cancel(%q) = %v, want %v %s", tc.reason, err, tc.kind, tc.rule)
			}
		})
	}

	if _, err := ops.Cancel(ctx, "", id1, "EHR refuses v1; corrected in v2"); err != nil {
		t.Fatalf("Cancel(v1) = %v", err)
	}
	v, err := ops.Show(ctx, search.AllTenants, id1, false)
	if err != nil || v.Status != store.StatusDead || v.LastError != "cancelled by operator: EHR refuses v1; corrected in v2" {
		t.Fatalf("after Cancel: %+v %v; want dead, cancelled by operator", v, err)
	}
	if v, err := ops.Show(ctx, search.AllTenants, id2, false); err != nil || v.WaitingFor != "" {
		t.Fatalf("Show(v2).WaitingFor after the cancel = %q, %v; want none", v.WaitingFor, err)
	}
	got, err := st.Claim(ctx, "hosp", time.Now().Add(time.Second), time.Minute, 10)
	if err != nil || len(got) != 1 || got[0].ID != v2 {
		t.Fatalf("Claim after the cancel = %v %v, want v2 only", got, err)
	}
	if _, err := ops.Cancel(ctx, "", id2, "too late"); !slices.Contains(outcome.Rules(err), "delivery-not-cancellable") {
		t.Errorf("Cancel of a delivery in flight = %v, want Conflict", err)
	}
}

// TestCancelKeepsTheReasons: a cancel of a delivery cancelled already is
// refused, the first reason kept (it overwrote it: an operator's review),
// and a dead letter's cancel keeps why the EHR refused it after the
// operator's reason; a retry and a cancel after it take a new reason.
func TestCancelKeepsTheReasons(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	it := &store.OutboxItem{Destination: "hosp", OrderKey: "src|session|R1", Patient: "src|P", Kind: "session",
		Source: "src", RecordID: "R1", Version: "1", Payload: []byte(`{}`)}
	if err := st.Write(ctx, func(tx store.Tx) error { return tx.Enqueue(it) }); err != nil {
		t.Fatal(err)
	}
	if got, err := st.Claim(ctx, "hosp", time.Now().Add(time.Second), time.Minute, 1); err != nil || len(got) != 1 {
		t.Fatalf("Claim = %v %v", got, err)
	}
	if err := st.Complete(ctx, &store.Attempt{ItemID: it.ID, At: time.Now(), HTTPStatus: 400, Error: "http 400 (invalid)"},
		store.StatusDead, time.Time{}); err != nil {
		t.Fatal(err)
	}
	ops := operator.New(st, []string{"hosp"}, nil, nil)
	ids, err := ops.IDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id := ids.Encode(it.ID)
	want := "cancelled by operator: the EHR refuses v1; it was a dead letter: http 400 (invalid)"
	if last, err := ops.Cancel(ctx, "", id, "the EHR refuses v1"); err != nil || last != want {
		t.Fatalf("Cancel of the dead letter = %q, %v; want %q", last, err, want)
	}
	if _, err := ops.Cancel(ctx, "", id, "again"); !slices.Contains(outcome.Rules(err), "delivery-cancelled-already") {
		t.Errorf("second Cancel = %v, want delivery-cancelled-already", err)
	}
	if v, err := ops.Show(ctx, search.AllTenants, id, false); err != nil || v.LastError != want {
		t.Fatalf("after the second cancel: lastError %q, %v; want %q", v.LastError, err, want)
	}
	if _, err := ops.Retry(ctx, "", id); err != nil {
		t.Fatalf("Retry = %v", err)
	}
	if last, err := ops.Cancel(ctx, "", id, "sent in error"); err != nil || last != "cancelled by operator: sent in error" {
		t.Errorf("Cancel after the retry = %q, %v", last, err)
	}
}

// TestViewShowsAnAnswerThatIsNotJSON: an answer that is not JSON (a proxy's
// text or HTML, or one cut at 64 KiB) is shown as text with its content
// type with payload=true, and without it the summary says an answer was
// received and withheld, never silently nothing.
func TestViewShowsAnAnswerThatIsNotJSON(t *testing.T) {
	if store.AnswerNoteSystem != outcome.RuleSystem {
		t.Errorf("store.AnswerNoteSystem = %s, want the rule system %s", store.AnswerNoteSystem, outcome.RuleSystem)
	}
	for _, tc := range []struct {
		name, answer, typ, note string
	}{
		{"text", "Internal error: patient Quuxfamily900 could not be saved", "text/plain; charset=utf-8", "is not JSON"},
		{"html", "<html><body>502 Bad Gateway</body></html>", "text/html; charset=utf-8", "is not JSON"},
		{"cut", `{"resourceType":"OperationOutcome","issue":[` + strings.Repeat(`{"severity":"error","code":"processing"},`, 2000)[:64<<10-44], "text/plain; charset=utf-8", "was cut at the 64 KiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			it := &store.OutboxItem{ID: 1, Status: store.StatusDead, Payload: []byte(`{}`)}
			attempts := []*store.Attempt{{N: 1, HTTPStatus: 500, Outcome: []byte(tc.answer)}}
			ids := operator.NewIDs([]byte("0123456789abcdef"))
			summary := operator.NewView(ids, it, attempts, false).History[0]
			if summary.AnswerText != "" || summary.Outcome != nil || summary.Withheld != 1 ||
				!strings.Contains(summary.AnswerNote, tc.note) || !strings.Contains(summary.AnswerNote, "withheld") {
				t.Errorf("without payload: %+v, want no text, withheld 1 and a note %q ... withheld", summary, tc.note)
			}
			whole := operator.NewView(ids, it, attempts, true).History[0]
			if whole.AnswerText != tc.answer || whole.AnswerType != tc.typ {
				t.Errorf("with payload: text %.40q type %q, want the answer as text, %q", whole.AnswerText, whole.AnswerType, tc.typ)
			}
		})
	}
}

// prober is a store whose write probe fails with err.
type prober struct {
	store.Store
	err error
}

func (p prober) ProbeWrite(context.Context) error { return p.err }

// TestReadyNamesTheWriteFailure: /readyz's "database" says why a write
// could not begin or commit now: another process's lock, a full disk, a
// read-only database, an I/O error; not ready in each case.
func TestReadyNamesTheWriteFailure(t *testing.T) {
	st := openStore(t)
	for _, tc := range []struct {
		cause, want string
	}{
		{store.CauseLocked, "locked"},
		{store.CauseFull, "full"},
		{store.CauseReadOnly, "read-only"},
		{store.CauseIO, "io-error"},
		{store.CauseCantOpen, "io-error"},
		{store.CauseTimeout, "timeout"},
		{"", "unavailable"},
	} {
		t.Run(tc.want+"/"+tc.cause, func(t *testing.T) {
			err := fmt.Errorf("probe: %w", store.ErrUnavailable)
			if tc.cause != "" {
				err = fmt.Errorf("probe: %w", store.Unavailable(tc.cause, fmt.Errorf("driver")))
			}
			r, rerr := operator.New(prober{Store: st, err: err}, nil, nil, nil).Ready(context.Background())
			if rerr != nil || r.Ready || r.Database != tc.want {
				t.Errorf("Ready = ready %v database %q, %v; want not ready, %q", r.Ready, r.Database, rerr, tc.want)
			}
		})
	}
}

// stalledStats is a store whose backlog query waits until its context
// ends, as PostgreSQL's does while another session holds a lock on the
// outbox.
type stalledStats struct{ store.Store }

func (s stalledStats) Stats(ctx context.Context) ([]store.DestinationStats, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestReadyBoundedByProbeTimeout: a readiness check whose database calls
// take longer than ProbeTimeout answers not ready, "timeout", with no
// error (the probe's JSON, not an OperationOutcome after the statement
// timeout). The caller's own deadline here is far longer.
func TestReadyBoundedByProbeTimeout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*operator.ProbeTimeout)
	defer cancel()
	r, err := operator.New(stalledStats{openStore(t)}, nil, nil, nil).Ready(ctx)
	if err != nil || r.Ready || r.Database != "timeout" {
		t.Errorf("Ready with the backlog query stalled = ready %v database %q, %v; want not ready, timeout", r.Ready, r.Database, err)
	}
	if ctx.Err() != nil {
		t.Errorf("Ready waited for the caller's deadline, not its own")
	}
}

// TestRetryRefusesASupersededDeadLetter: a dead letter whose record has a
// later delivery to the same destination, delivered or still to be sent,
// is not retried: the old version would overwrite the later one at the EHR
// (p23 F2). The refusal names the later delivery and says what to do, and
// the views name it too.
func TestRetryRefusesASupersededDeadLetter(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	ops := operator.New(st, []string{"hosp"}, nil, nil)
	ids, err := ops.IDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v1 := enqueue(t, st, "hosp", "R1", "1", store.StatusDead)
	v2 := enqueue(t, st, "hosp", "R1", "2", store.StatusDone)
	alone := enqueue(t, st, "hosp", "R2", "1", store.StatusDead)
	_, err = ops.Retry(ctx, "", ids.Encode(v1))
	kind, issues := outcome.From(err)
	if kind != outcome.Conflict || !slices.Contains(outcome.Rules(err), "delivery-superseded") || len(issues) != 1 ||
		!strings.Contains(issues[0].Message, ids.Encode(v2)) || !strings.Contains(issues[0].Message, "deliveries replay") {
		t.Errorf("Retry(v1, v2 delivered) = %v, want Conflict delivery-superseded naming %s and replay", err, ids.Encode(v2))
	}
	if v, err := ops.Show(ctx, "", ids.Encode(v1), false); err != nil || v.Status != store.StatusDead {
		t.Errorf("after the refused retry: %+v %v, want still dead", v, err)
	}
	// The views say so before a retry is tried (an EHR review): Show and
	// List name the later delivery, and a dead letter with none shows none.
	if v, err := ops.Show(ctx, "", ids.Encode(v1), false); err != nil || v.SupersededBy != ids.Encode(v2) || v.SupersededStatus != store.StatusDone {
		t.Errorf("Show(v1) superseded by %q (%s), %v; want %s done", v.SupersededBy, v.SupersededStatus, err, ids.Encode(v2))
	}
	vs, err := ops.List(ctx, "", store.DeliveryFilter{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		want := map[string]string{ids.Encode(v1): ids.Encode(v2)}[v.ID]
		if v.SupersededBy != want {
			t.Errorf("List: %s (%s) superseded by %q, want %q", v.ID, v.Status, v.SupersededBy, want)
		}
	}
	if _, err := ops.Retry(ctx, "", ids.Encode(alone)); err != nil {
		t.Errorf("Retry of a dead letter with no later delivery = %v", err)
	}
}

// TestViewCountsEHRWarnings: warnings in the OperationOutcomes of an EHR's
// 200 answer are counted on the attempt and the delivery (ehrWarnings), so
// an operator sees them without opening every attempt (p23 F8).
func TestViewCountsEHRWarnings(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	it := &store.OutboxItem{Destination: "hosp", OrderKey: "src|vitals|W", Patient: "src|P", Kind: "vitals",
		Source: "src", RecordID: "W", Version: "1", Payload: []byte(`{}`)}
	if err := st.Write(ctx, func(tx store.Tx) error { return tx.Enqueue(it) }); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Claim(ctx, "hosp", time.Now().Add(time.Second), time.Minute, 1); err != nil {
		t.Fatal(err)
	}
	answer := `{"resourceType":"Bundle","type":"transaction-response","entry":[
		{"response":{"status":"201","outcome":{"resourceType":"OperationOutcome","issue":[{"severity":"warning","code":"business-rule","diagnostics":"x"},{"severity":"information","code":"informational"}]}}},
		{"response":{"status":"200","outcome":{"resourceType":"OperationOutcome","issue":[{"severity":"warning","code":"code-invalid"}]}}}]}`
	if err := st.Complete(ctx, &store.Attempt{ItemID: it.ID, At: time.Now(), HTTPStatus: 200, Outcome: []byte(answer)}, store.StatusDone, time.Time{}); err != nil {
		t.Fatal(err)
	}
	ops := operator.New(st, []string{"hosp"}, nil, nil)
	ids, err := ops.IDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v, err := ops.Show(ctx, "", ids.Encode(it.ID), false)
	if err != nil || v.EHRWarnings != 2 || len(v.History) != 1 || v.History[0].EHRWarnings != 2 {
		t.Fatalf("Show = %+v %v, want 2 EHR warnings on the delivery and its attempt", v, err)
	}
}

// TestViewCountsOutageProbes: a delivery's view says how many of its
// attempts were probes of a destination on hold that failed on the
// outage, which do not count toward the attempt limit (p23 F3), so an
// operator reading "attempts: 12" knows how close the record is to a
// dead letter.
func TestViewCountsOutageProbes(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	it := &store.OutboxItem{Destination: "hosp", OrderKey: "src|vitals|W", Patient: "src|P", Kind: "vitals",
		Source: "src", RecordID: "W", Version: "1", Payload: []byte(`{}`)}
	if err := st.Write(ctx, func(tx store.Tx) error { return tx.Enqueue(it) }); err != nil {
		t.Fatal(err)
	}
	for i, probe := range []bool{true, false} {
		if _, err := st.Claim(ctx, "hosp", time.Now().Add(time.Hour), time.Minute, 1); err != nil {
			t.Fatal(err)
		}
		if err := st.Complete(ctx, &store.Attempt{ItemID: it.ID, At: time.Now(), HTTPStatus: 503, Error: "http 503", Probe: probe},
			store.StatusPending, time.Now().Add(-time.Second)); err != nil {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
	}
	ops := operator.New(st, []string{"hosp"}, nil, nil)
	ids, err := ops.IDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v, err := ops.Show(ctx, "", ids.Encode(it.ID), false)
	if err != nil || v.Attempts != 2 || v.OutageProbes != 1 {
		t.Fatalf("Show = %+v %v, want 2 attempts, 1 of them an outage probe", v, err)
	}
	raw, _ := json.Marshal(v)
	if !strings.Contains(string(raw), `"outageProbes":1`) {
		t.Errorf("the view's JSON does not say so: %s", raw)
	}
}

// TestListPageOfThousand: a page of up to 1,000 deliveries, each of its
// own trace, is listed (p45: beyond 100 the corrections' search of their
// traces was refused, and the list answered 500).
func TestListPageOfThousand(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	const n = 250
	err := st.Write(ctx, func(tx store.Tx) error {
		for i := range n {
			it := &store.OutboxItem{Destination: "hosp", OrderKey: fmt.Sprint("src|vitals|R", i), Patient: "src|P", Kind: "vitals",
				Source: "src", RecordID: fmt.Sprint("R", i), Version: "1", Payload: []byte(`{}`), TraceID: fmt.Sprintf("%032x", i+1)}
			if err := tx.Enqueue(it); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ops := operator.New(st, []string{"hosp"}, nil, nil)
	vs, err := ops.List(ctx, "", store.DeliveryFilter{Limit: 1000})
	if err != nil || len(vs) != n {
		t.Fatalf("List(limit 1000) = %d deliveries, %v; want %d", len(vs), err, n)
	}
}
