package planning_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/planning"
)

// optOut is a planning-time rule of the kind issue 15 adds (a preference):
// it skips the recipients it names.
type optOut map[string]bool

func (o optOut) Skip(p planning.Pair) (string, string) {
	if o[p.Recipient.Email] {
		return dispatch.ReasonOptedOut, "recipient opted out"
	}
	return "", ""
}

// The planner runs its rules in order on each (recipient, action) with an
// address, and the first reason skips the delivery: the seam the rule
// engine's conditions, preferences and suppressions join.
func TestRulesRunInOrderAndTheFirstReasonSkips(t *testing.T) {
	a := actions.Action{ID: 7, ConfigName: actions.ConfigEmail, Config: actions.Config{Condition: `recipient.macros.TIER == "gold"`}}
	in := planning.Input{CollectionID: 1, Source: "api", Notification: dispatch.Notification{Name: "N", Recipients: []dispatch.Recipient{
		{Email: "ann@example.test", Macros: dispatch.Macros{"TIER": "gold"}}, // sent
		{Email: "bob@example.test", Macros: dispatch.Macros{"TIER": "gold"}}, // opted out
		{Email: "cy@example.test", Macros: dispatch.Macros{"TIER": "tin"}},   // condition first
		{Phone: "+14155550100", Macros: dispatch.Macros{"TIER": "gold"}},     // no address: no rule runs
	}}}
	p := planning.New(planning.Static(planning.Condition{}), planning.Static(optOut{"bob@example.test": true, "cy@example.test": true}))
	note, ds, err := p.Plan(context.Background(), in, planning.Resolution{Rule: actions.Rule{EventID: 3, Actions: []actions.Action{a}}, Found: true}, 1000)

	require.NoError(t, err)
	require.Equal(t, dispatch.NotificationAccepted, note.Status)
	require.Equal(t, 4, note.DeliveryCount)
	require.Equal(t, 3, note.SkippedCount)
	require.Len(t, ds, 4)
	want := []struct{ status, reason, detail string }{
		{dispatch.StatusPending, "", ""},
		{dispatch.StatusSkipped, dispatch.ReasonOptedOut, "recipient opted out"},
		{dispatch.StatusSkipped, dispatch.ReasonConditionFalse, `the action's condition is false: recipient.macros.TIER == "gold"`},
		{dispatch.StatusSkipped, "recipient has no email address (neither tos nor email)", ""},
	}
	for i, w := range want {
		require.Equal(t, w.status, ds[i].Status, "delivery %d", i)
		require.Equal(t, w.reason, ds[i].Reason, "delivery %d", i)
		require.Equal(t, w.detail, ds[i].ReasonDetail, "delivery %d", i)
	}
}

// batchRule counts its ForBatch calls and sees the inputs it is given.
type batchRule struct {
	calls int
	names []string
	err   error
}

func (b *batchRule) ForBatch(_ context.Context, ins []planning.Input) (planning.Rule, error) {
	b.calls++
	for _, in := range ins {
		b.names = append(b.names, in.Notification.Name)
	}
	return optOut{}, b.err
}

// A rule that needs stored data reads it once for the whole batch, and its
// failure is the batch's: nothing is planned from a partial read.
func TestBatchRulesReadOncePerBatchAndTheirErrorsFailIt(t *testing.T) {
	br := &batchRule{}
	p := planning.New(br)
	ins := []planning.Input{{Notification: dispatch.Notification{Name: "A"}}, {Notification: dispatch.Notification{Name: "B"}}}
	_, err := p.ForBatch(context.Background(), ins)
	require.NoError(t, err)
	require.Equal(t, 1, br.calls)
	require.Equal(t, []string{"A", "B"}, br.names)

	br.err = errors.New("connection refused")
	_, err = p.ForBatch(context.Background(), ins)
	require.ErrorIs(t, err, br.err)
}

// meetRule reads only once every other meetRule of the batch has begun to:
// it stands for a rule whose read is a round trip to the database.
type meetRule struct {
	here   chan struct{} // closed when this rule's read begins
	others []chan struct{}
	err    error
}

func (m *meetRule) ForBatch(ctx context.Context, _ []planning.Input) (planning.Rule, error) {
	close(m.here)
	for _, o := range m.others {
		select {
		case <-o:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Second):
			return nil, errors.New("read alone: the other rules had not begun theirs")
		}
	}
	return optOut{}, m.err
}

// The rules that read stored data read at the same time, so a batch waits
// for one round trip to the database, not one per rule; and one rule's
// failure is still the batch's.
func TestBatchRulesReadAtTheSameTime(t *testing.T) {
	a, b := &meetRule{here: make(chan struct{})}, &meetRule{here: make(chan struct{})}
	a.others, b.others = []chan struct{}{b.here}, []chan struct{}{a.here}
	p := planning.New(planning.Static(planning.Condition{}), a, b)
	_, err := p.ForBatch(context.Background(), []planning.Input{{Notification: dispatch.Notification{Name: "A"}}})
	require.NoError(t, err)

	a, b = &meetRule{here: make(chan struct{})}, &meetRule{here: make(chan struct{}), err: errors.New("connection refused")}
	a.others, b.others = []chan struct{}{b.here}, []chan struct{}{a.here}
	_, err = planning.New(a, b).ForBatch(context.Background(), nil)
	require.ErrorIs(t, err, b.err)
}
