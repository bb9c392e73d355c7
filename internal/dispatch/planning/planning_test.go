package planning_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/planning"
)

// optOut is a planning-time rule of the kind issue 15 adds (a preference):
// it skips the recipients it names.
type optOut map[string]bool

func (o optOut) Skip(_ *actions.Action, rc dispatch.Recipient) string {
	if o[rc.Email] {
		return "recipient opted out"
	}
	return ""
}

// The planner runs its rules in order on each (recipient, action) with an
// address, and the first reason skips the delivery: the seam the rule
// engine's conditions, preferences and suppressions join.
func TestRulesRunInOrderAndTheFirstReasonSkips(t *testing.T) {
	a := actions.Action{ID: 7, ConfigName: actions.ConfigEmail, Config: actions.Config{Condition: &actions.Condition{Macro: "TIER", Equals: "gold"}}}
	in := planning.Input{CollectionID: 1, Source: "api", Notification: dispatch.Notification{Name: "N", Recipients: []dispatch.Recipient{
		{Email: "ann@example.test", Macros: dispatch.Macros{"TIER": "gold"}}, // sent
		{Email: "bob@example.test", Macros: dispatch.Macros{"TIER": "gold"}}, // opted out
		{Email: "cy@example.test", Macros: dispatch.Macros{"TIER": "tin"}},   // condition first
		{Phone: "+14155550100", Macros: dispatch.Macros{"TIER": "gold"}},     // no address: no rule runs
	}}}
	p := planning.New(planning.Condition{}, optOut{"bob@example.test": true, "cy@example.test": true})
	note, ds := p.Plan(in, planning.Resolution{Rule: actions.Rule{EventID: 3, Actions: []actions.Action{a}}, Found: true}, 1000)

	require.Equal(t, dispatch.NotificationAccepted, note.Status)
	require.Equal(t, 4, note.DeliveryCount)
	require.Equal(t, 3, note.SkippedCount)
	require.Len(t, ds, 4)
	want := []struct{ status, reason string }{
		{dispatch.StatusPending, ""},
		{dispatch.StatusSkipped, "recipient opted out"},
		{dispatch.StatusSkipped, `condition not met: macro TIER is "tin", action 7 needs "gold"`},
		{dispatch.StatusSkipped, "recipient has no email address (neither tos nor email)"},
	}
	for i, w := range want {
		require.Equal(t, w.status, ds[i].Status, "delivery %d", i)
		require.Equal(t, w.reason, ds[i].Reason, "delivery %d", i)
	}
}
