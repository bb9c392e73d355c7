package status_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/dispatch/status"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/store"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// fakeEvents wants the types in want (for every collection) and keeps what
// it is given; fail makes Record fail.
type fakeEvents struct {
	want      map[string]bool
	recorded  []outbox.TypedEvent
	committed int
	fail      error
}

func (f *fakeEvents) Wants(_ context.Context, _ *gorm.DB, _ int64, t string) bool { return f.want[t] }

func (f *fakeEvents) Record(_ context.Context, _ *gorm.DB, evs []outbox.TypedEvent) error {
	if f.fail != nil {
		return f.fail
	}
	f.recorded = append(f.recorded, evs...)
	return nil
}

func (f *fakeEvents) Committed() { f.committed++ }

func eventTypes(evs []outbox.TypedEvent) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Type
	}
	return out
}

// Twilio's callbacks (MarkByProviderID) and the batched reports
// (MarkReports) record the events that are wanted, each with its stable
// id; an engagement changes no status; and when the events cannot be
// recorded the status change does not commit either.
func TestReportsRecordLifecycleEvents(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		t.Parallel()
		ctx := context.Background()
		ev := &fakeEvents{want: map[string]bool{outbox.TypeDeliveryDelivered: true, outbox.TypeDeliveryFailed: true,
			outbox.TypeDeliveryClicked: true}}
		s := status.New(db, nil).WithEvents(ev)
		ids := insertDeliveries(t, db, "sent", "sent", "sent")
		require.NoError(t, db.Exec("UPDATE deliveries SET provider = 'twilio', provider_message_id = 'SM1', channel = 'sms', address = '+15555550100' WHERE id = ?", ids[0]).Error)

		n, err := s.MarkByProviderID(ctx, "twilio", "SM1", "failed", "30003: unreachable")
		require.NoError(t, err)
		require.EqualValues(t, 1, n)
		require.Equal(t, []string{outbox.TypeDeliveryFailed}, eventTypes(ev.recorded))
		got := ev.recorded[0]
		require.Equal(t, "evt_dlv_"+itoa(ids[0])+"_failed", got.ID)
		require.JSONEq(t, `{"id":`+itoa(ids[0])+`,"notificationId":`+itoa(notificationOf(t, db, ids[0]))+`,"collectionId":1,"actionId":1,
"channel":"sms","address":"+15555550100","status":"failed","reason":"30003: unreachable","reasonDetail":"","provider":"twilio",
"providerMessageId":"SM1","time":`+itoa(got.Timestamp.UnixMilli())+`}`, string(got.Payload))
		require.Equal(t, 1, ev.committed)

		// delivered is wanted, bounced is not; the click changes nothing.
		ev.recorded = nil
		applied, err := s.MarkReports(ctx, []status.Report{
			{DeliveryID: ids[1], Status: status.ReportClicked},
			{DeliveryID: ids[1], Status: "delivered"},
			{DeliveryID: ids[2], Status: "bounced", Reason: "550"},
		})
		require.NoError(t, err)
		require.Equal(t, []bool{true, true, true}, applied)
		require.Equal(t, []string{outbox.TypeDeliveryClicked, outbox.TypeDeliveryDelivered}, eventTypes(ev.recorded))
		require.Regexp(t, `^evt_dlv_\d+_clicked_\d+$`, ev.recorded[0].ID)
		var st string
		require.NoError(t, db.Raw("SELECT status FROM deliveries WHERE id = ?", ids[1]).Scan(&st).Error)
		require.Equal(t, "delivered", st)

		// The event and the change commit together or not at all.
		ids = insertDeliveries(t, db, "sent")
		ev.fail = errors.New("webhooks down")
		_, err = s.MarkReports(ctx, []status.Report{{DeliveryID: ids[0], Status: "delivered"}})
		require.ErrorIs(t, err, ev.fail)
		require.NoError(t, db.Raw("SELECT status FROM deliveries WHERE id = ?", ids[0]).Scan(&st).Error)
		require.Equal(t, "sent", st, "no event, no status change")
	})
}

func notificationOf(t *testing.T, db *gorm.DB, id int64) int64 {
	var n int64
	require.NoError(t, db.Raw("SELECT notification_id FROM deliveries WHERE id = ?", id).Scan(&n).Error)
	return n
}

func itoa(n int64) string { return fmt.Sprint(n) }

// A Twilio callback finds its delivery through deliveries_twilio_message_idx
// (migration 00023) on both dialects: the lookup repeats the partial
// index's predicate, without which neither planner may use the index.
func TestTwilioLookupUsesItsIndex(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		t.Parallel()
		q := "SELECT id FROM deliveries WHERE " + status.ByMessageIDWhere
		var plan string
		require.NoError(t, db.Transaction(func(tx *gorm.DB) error {
			if store.IsPostgres(tx) {
				// An empty table is cheapest to scan: only an index the
				// query may use beats a disabled sequential scan.
				if err := tx.Exec("SET LOCAL enable_seqscan = off").Error; err != nil {
					return err
				}
			}
			plan = testdb.Plan(t, tx, q, "SM1")
			return nil
		}))
		require.Contains(t, plan, "deliveries_twilio_message_idx")
	})
}
