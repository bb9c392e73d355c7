package channels_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/delivery"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// TestSendGridFromThroughDispatch follows the sender to the wire: the real
// dispatcher and SendGrid client put the action's sender, else its
// collection's default, else the configured one, in mail/send's from.
func TestSendGridFromThroughDispatch(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		sg := newFake(t, accepted("sg"))
		withDefault := seedEmailRule(t, db, "billing@example.test", "Billing",
			actions.Config{Content: actions.Content{Subject: "own", Text: "Hi"}, FromEmail: "alerts@example.test", FromName: "Alerts"},
			actions.Config{Content: actions.Content{Subject: "inherited", Text: "Hi"}})
		noDefault := seedEmailRule(t, db, "", "",
			actions.Config{Content: actions.Content{Subject: "service", Text: "Hi"}})

		disp := delivery.New(db, map[string]channels.Channel{actions.ChannelEmail: newSendGrid(t, sg)}, config.Default().Dispatch,
			delivery.Senders{Email: channels.Address{Email: "noreply@example.test", Name: "Example"}}, slog.New(slog.DiscardHandler), nil)
		in := intake.New(db, actions.NewRules(db), outbox.NewWriter(nil, nil), nil, disp)
		var subs []intake.Submission
		for _, cid := range []int64{withDefault, noDefault} {
			req, err := dispatch.Parse([]byte(`{"collectionId": `+jsonNum(cid)+`, "notification": [{"name": "USER_INVITEUSER",
			  "recipients": [{"email": "ann@example.test"}]}]}`), 1<<20)
			require.NoError(t, err)
			subs = append(subs, intake.Submission{Source: intake.SourceQueue, Request: req})
		}
		_, err := in.Submit(context.Background(), subs)
		require.NoError(t, err)
		_, err = disp.RunOnce(context.Background())
		require.NoError(t, err)

		type address struct{ Email, Name string }
		from := map[string]address{} // personalization subject → from
		for _, r := range sg.requests() {
			var mail struct {
				From             address `json:"from"`
				Personalizations []struct {
					Subject string `json:"subject"`
				} `json:"personalizations"`
			}
			require.NoError(t, json.Unmarshal(r.Body, &mail))
			for _, p := range mail.Personalizations {
				from[p.Subject] = mail.From
			}
		}
		require.Equal(t, map[string]address{
			"own":       {"alerts@example.test", "Alerts"},
			"inherited": {"billing@example.test", "Billing"},
			"service":   {"noreply@example.test", "Example"},
		}, from)
	})
}

// seedEmailRule stores a collection with the given default sender whose
// USER_INVITEUSER fires one email action per config.
func seedEmailRule(t *testing.T, db *gorm.DB, fromEmail, fromName string, configs ...actions.Config) int64 {
	t.Helper()
	now := time.Now().UnixMilli()
	var cid, eid int64
	require.NoError(t, db.Raw(`INSERT INTO collections (name, status, default_from_email, default_from_name, created_time, updated_time)
VALUES (?, 'ACTIVE', ?, ?, ?, ?) RETURNING id`, testdb.Name("c"), fromEmail, fromName, now, now).Scan(&cid).Error)
	require.NoError(t, db.Raw(`INSERT INTO events (collection_id, name, status, created_time, updated_time) VALUES (?, 'USER_INVITEUSER', 'ACTIVE', ?, ?) RETURNING id`,
		cid, now, now).Scan(&eid).Error)
	for i, c := range configs {
		a := actions.Action{Name: "email " + jsonNum(int64(i)), ConfigName: actions.ConfigEmail, Config: c,
			CollectionID: cid, EventID: eid, Status: actions.StatusActive, CreatedTime: now, UpdatedTime: now}
		require.NoError(t, db.Create(&a).Error)
	}
	return cid
}
