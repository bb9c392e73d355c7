package planning_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/planning"
)

// lookup is a suppression list in memory; it counts its calls and keys.
type lookup struct {
	entries map[planning.SuppressionKey]*planning.SuppressionHit
	calls   int
	keys    int
	err     error
}

func (l *lookup) Suppressed(_ context.Context, keys []planning.SuppressionKey) ([]*planning.SuppressionHit, error) {
	l.calls++
	l.keys += len(keys)
	out := make([]*planning.SuppressionHit, len(keys))
	for i, k := range keys {
		out[i] = l.entries[k]
	}
	return out, l.err
}

// The suppression rule asks the list once per batch for every address of
// every recipient, and skips a recipient whose address on the action's
// channel is listed: for email, any To address; cc and bcc are not checked.
func TestSuppressionsSkipListedAddresses(t *testing.T) {
	hit := &planning.SuppressionHit{Reason: "550 user unknown", Source: "sendgrid_bounce", CreatedTime: 1709786390000}
	l := &lookup{entries: map[planning.SuppressionKey]*planning.SuppressionHit{
		{CollectionID: 1, Channel: "email", Address: "bob@example.test"}: hit,
		{CollectionID: 1, Channel: "email", Address: "cc@example.test"}:  hit,
		{CollectionID: 1, Channel: "sms", Address: "+14155550100"}:       {Source: "twilio_stop", CreatedTime: 1},
		{CollectionID: 2, Channel: "email", Address: "ann@example.test"}: hit, // another collection's
	}}
	email := actions.Action{ID: 7, ConfigName: actions.ConfigEmail}
	sms := actions.Action{ID: 8, ConfigName: actions.ConfigSMS}
	in := planning.Input{CollectionID: 1, Notification: dispatch.Notification{Name: "N", Recipients: []dispatch.Recipient{
		{Email: "ann@example.test", Phone: "+14155550100"},                                              // email goes, sms suppressed
		{Tos: []dispatch.Address{{Email: "ann@example.test"}, {Email: "bob@example.test"}}},             // one To suppressed
		{Email: "dee@example.test", Ccs: []dispatch.Address{{Email: "cc@example.test"}}, PushID: "tok"}, // a cc: not checked
	}}}
	p := planning.New(planning.Static(planning.Condition{}), planning.Suppressions(l))
	b, err := p.ForBatch(context.Background(), []planning.Input{in, in})
	require.NoError(t, err)
	require.Equal(t, 1, l.calls, "one lookup for the batch")
	require.Equal(t, 2*6, l.keys, "every To address, phone and push id of every notification")

	_, ds := b.Plan(in, planning.Resolution{Rule: actions.Rule{EventID: 3, Actions: []actions.Action{email, sms}}, Found: true}, 1000)
	require.Len(t, ds, 6)
	want := []struct{ status, reason string }{
		{dispatch.StatusPending, ""},
		{dispatch.StatusSkipped, dispatch.ReasonSuppressed},
		{dispatch.StatusSkipped, dispatch.ReasonSuppressed},
		{dispatch.StatusSkipped, "recipient has no phone number"},
		{dispatch.StatusPending, ""},
		{dispatch.StatusSkipped, "recipient has no phone number"},
	}
	for i, w := range want {
		require.Equal(t, w.status, ds[i].Status, "delivery %d", i)
		require.Equal(t, w.reason, ds[i].Reason, "delivery %d", i)
	}
	require.Equal(t, "sms +14155550100 is suppressed since 1970-01-01T00:00:00Z by twilio_stop", ds[1].ReasonDetail)
	require.Equal(t, "email bob@example.test is suppressed since 2024-03-07T04:39:50Z by sendgrid_bounce: 550 user unknown", ds[2].ReasonDetail)

	l.err = errors.New("database is down")
	_, err = p.ForBatch(context.Background(), []planning.Input{in})
	require.ErrorIs(t, err, l.err, "a failed lookup fails the batch (an outage), it does not send")
}
