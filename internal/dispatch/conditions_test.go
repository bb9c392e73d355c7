package dispatch_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
	"github.com/notificationservice/notificationservice/internal/dispatch/planning"
	"github.com/notificationservice/notificationservice/internal/dispatch/status"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// decisions counts what planning reports (planning.Observer).
type decisions map[string]int

func (d decisions) Decided(reason string, n int) { d[reason] += n }

// Conditions decide through the queue's path (intake.Submit, as the
// consumer calls it) on both dialects, from rules as Rules.Resolve loads
// them: each documented example true and false, a runtime error that skips
// only its delivery, the old object form stored in a row, and the event's
// condition checked before the action's.
func TestConditionsThroughIntake(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, eventCond, actionCond string // actionCond is the stored config's JSON value
		recipient, data             string
		reason, detail              string
	}{
		{"locale true", "", `"recipient.locale startsWith \"fr\""`, `"locale": "fr"`, "", "", ""},
		{"locale false", "", `"recipient.locale startsWith \"fr\""`, `"locale": "de"`, "", dispatch.ReasonConditionFalse, `recipient.locale startsWith "fr"`},
		{"plan true", "", `"recipient.macros.PLAN in [\"pro\", \"team\"]"`, `"macros": {"PLAN": "pro"}`, "", "", ""},
		{"plan false", "", `"recipient.macros.PLAN in [\"pro\", \"team\"]"`, "", "", dispatch.ReasonConditionFalse, "recipient.macros.PLAN"},
		{"amount true", "", `"notification.data.amount > 100"`, "", `{"amount": 100.5}`, "", ""},
		{"amount false", "", `"notification.data.amount > 100"`, "", `{"amount": 3}`, dispatch.ReasonConditionFalse, "notification.data.amount > 100"},
		{"amount a string", "", `"notification.data.amount > 100"`, "", `{"amount": "150"}`, dispatch.ReasonConditionError, "invalid operation"},
		{"stored object form", "", `{"macro": "PLAN", "equals": "pro"}`, `"macros": {"PLAN": "pro"}`, "", "", ""},
		{"stored object form false", "", `{"macro": "PLAN", "equals": "pro"}`, "", "", dispatch.ReasonConditionFalse, `recipient.macros["PLAN"] == "pro"`},
		{"event first", `collection.name == "nope"`, `"notification.data.amount > 100"`, "", `{"amount": "x"}`, dispatch.ReasonConditionFalse, `the event's condition is false: collection.name == "nope"`},
		{"event passes", `event.name startsWith "Q" && notification.source == "queue"`, `"recipient.phone != \"\""`, "", "", "", ""},
		{"stored event condition that no longer compiles", `recipient.gone`, "", "", "", dispatch.ReasonConditionError, "the event's condition does not compile"},
	}
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		cid, _ := seedRule(t, db, "SEED")
		now := int64(1)
		obs := decisions{}
		in := intake.New(db, actions.NewRules(db), nil, nil, nil, intake.WithPlanner(planning.Default().WithObserver(obs)))
		ctx := context.Background()
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				name := fmt.Sprintf("Q%d", i)
				var eventID int64
				// Straight into the tables, as an older version stored them
				// (the object form) or as a future one might (a condition the
				// environment no longer has).
				require.NoError(t, db.Raw(`INSERT INTO events (collection_id, name, status, condition, created_time, updated_time) VALUES (?, ?, 'ACTIVE', ?, ?, ?) RETURNING id`,
					cid, name, tc.eventCond, now, now).Scan(&eventID).Error)
				config := `{"body": "hi"}`
				if tc.actionCond != "" {
					config = `{"body": "hi", "condition": ` + tc.actionCond + `}`
				}
				require.NoError(t, db.Exec(`INSERT INTO actions (collection_id, event_id, name, status, config_name, config, created_time, updated_time) VALUES (?, ?, 'sms', 'ACTIVE', 'SendSmsConfig', ?, ?, ?)`,
					cid, eventID, config, now, now).Error)

				rc := `{"phone": "+14155550100"`
				if tc.recipient != "" {
					rc += ", " + tc.recipient
				}
				body := fmt.Sprintf(`{"collectionId": CID, "notification": [{"name": %q, "recipients": [%s}, {"email": "no-phone@example.com"}]`, name, rc)
				if tc.data != "" {
					body += `, "data": ` + tc.data
				}
				body += `}]}`
				out, err := in.Submit(ctx, []intake.Submission{{Source: intake.SourceQueue, Key: fmt.Sprintf("m-%d", i), Request: request(t, cid, body)}})
				require.NoError(t, err)
				note, err := status.New(db, nil).Get(ctx, cid, out[0].Notifications[0].ID)
				require.NoError(t, err)
				require.Len(t, note.Deliveries, 2)
				d := note.Deliveries[0]
				require.Equal(t, "recipient has no phone number", note.Deliveries[1].Reason, "no address: no condition runs")
				if tc.reason == "" {
					require.Equal(t, dispatch.StatusPending, d.Status, "%s: %s", d.Reason, d.ReasonDetail)
					return
				}
				require.Equal(t, dispatch.StatusSkipped, d.Status)
				require.Equal(t, tc.reason, d.Reason, d.ReasonDetail)
				require.Contains(t, d.ReasonDetail, tc.detail)
			})
		}
		// Every decision was counted, by reason.
		require.Equal(t, decisions{planning.DecisionPlanned: 5, planning.DecisionNoAddress: len(cases),
			dispatch.ReasonConditionFalse: 5, dispatch.ReasonConditionError: 2}, obs)
	})
}
