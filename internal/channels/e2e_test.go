package channels_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"sync/atomic"
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

type deliveryRow struct {
	RecipientIndex    int
	Channel           string
	Status            string
	Reason            string
	Attempts          int
	NextAttemptAt     int64
	Provider          string
	ProviderMessageID *string
}

// TestProvidersThroughDispatch runs the real dispatcher against the real
// provider channels and their fakes: each provider outcome (accepted, 429
// with Retry-After, 503, a permanent error) ends in the right delivery
// status, reason and attempt count, and nothing is sent twice.
func TestProvidersThroughDispatch(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		// SendGrid accepts; Twilio is busy once (429, Retry-After: 5) then
		// accepts; FCM is unavailable once, then says the token is gone.
		sg := newFake(t, accepted("sg"))
		var smsCalls, pushCalls atomic.Int32
		tw := newFake(t, func(w http.ResponseWriter, r *http.Request, body []byte, n int) {
			if smsCalls.Add(1) == 1 {
				twilioError(429, 20429, "Too Many Requests", "Retry-After", "5")(w, r, body, n)
				return
			}
			twilioCreated(w, r, body, n)
		})
		fcm := newFake(t, func(w http.ResponseWriter, r *http.Request, body []byte, n int) {
			if pushCalls.Add(1) == 1 {
				fcmError(503, "UNAVAILABLE", "UNAVAILABLE", "try later")(w, r, body, n)
				return
			}
			fcmError(404, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found.")(w, r, body, n)
		})
		chans := providerChannels(t, sg, tw, fcm)

		cid := seedProviderRule(t, db)
		clock := time.Now().Add(time.Second)
		cfg := config.Default().Dispatch
		cfg.BackoffBase, cfg.MaxAttempts = time.Second, 5
		disp := delivery.New(db, chans, cfg, delivery.Senders{Email: channels.Address{Email: "noreply@example.test", Name: "Example"}},
			slog.New(slog.DiscardHandler), func() time.Time { return clock })
		in := intake.New(db, actions.NewRules(db), outbox.NewWriter(nil, nil), nil, disp)
		body := `{"collectionId": ` + jsonNum(cid) + `, "notification": [{"name": "USER_INVITEUSER", "recipients": [
		  {"email": "ann@example.test", "phone": "+14155550100", "pushId": "tok-ann", "macros": {"FNAME": "Ann"}},
		  {"email": "bob@example.test", "phone": "555-0100", "macros": {"FNAME": "Bob"}}]}]}`
		req, err := dispatch.Parse([]byte(body), 1<<20)
		require.NoError(t, err)
		out, err := in.Submit(context.Background(), []intake.Submission{{Source: intake.SourceQueue, Request: req}})
		require.NoError(t, err)
		nid := out[0].Notifications[0].ID

		_, err = disp.RunOnce(context.Background())
		require.NoError(t, err)
		rows := providerRows(t, db, nid)

		// Email: both recipients in one SendGrid request, both sent.
		require.Equal(t, 1, sg.count())
		for _, i := range []int{0, 1} {
			d := rows["email"][i]
			require.Equal(t, "sent", d.Status)
			require.Equal(t, 1, d.Attempts)
			require.Equal(t, "sendgrid", d.Provider)
			require.Equal(t, "sg-1", *d.ProviderMessageID)
		}
		// SMS: Ann's was throttled and waits for Retry-After; Bob's number
		// is not E.164 and failed without a request.
		ann := rows["sms"][0]
		require.Equal(t, "pending", ann.Status)
		require.Equal(t, 1, ann.Attempts)
		require.Contains(t, ann.Reason, "HTTP 429 code 20429")
		require.GreaterOrEqual(t, ann.NextAttemptAt, clock.Add(5*time.Second).UnixMilli(), "Retry-After is honoured")
		bob := rows["sms"][1]
		require.Equal(t, "failed", bob.Status)
		require.Equal(t, 1, bob.Attempts)
		require.Contains(t, bob.Reason, "not E.164")
		require.Equal(t, 1, tw.count())
		// Push: 503, one request, back to pending.
		push := rows["push"][0]
		require.Equal(t, "pending", push.Status)
		require.Equal(t, 1, push.Attempts)
		require.Contains(t, push.Reason, "HTTP 503 UNAVAILABLE")
		require.Equal(t, 1, fcm.count())

		// Not due yet: nothing is sent.
		clock = clock.Add(2 * time.Second)
		_, err = disp.RunOnce(context.Background())
		require.NoError(t, err)
		require.Equal(t, 1, tw.count())

		clock = clock.Add(10 * time.Minute)
		_, err = disp.RunOnce(context.Background())
		require.NoError(t, err)
		rows = providerRows(t, db, nid)
		ann = rows["sms"][0]
		require.Equal(t, "sent", ann.Status)
		require.Equal(t, 2, ann.Attempts)
		require.Equal(t, "twilio", ann.Provider)
		require.Regexp(t, `^SM\d{32}$`, *ann.ProviderMessageID)
		push = rows["push"][0]
		require.Equal(t, "failed", push.Status)
		require.Equal(t, 2, push.Attempts)
		require.Contains(t, push.Reason, "device token is no longer registered")

		// Sent once: further runs send nothing more.
		clock = clock.Add(time.Hour)
		_, err = disp.RunOnce(context.Background())
		require.NoError(t, err)
		require.Equal(t, 1, sg.count())
		require.Equal(t, 2, tw.count())
		require.Equal(t, 2, fcm.count())
		var sms url.Values
		sms, err = url.ParseQuery(string(tw.requests()[1].Body))
		require.NoError(t, err)
		require.Equal(t, "Hi Ann, your code", sms.Get("Body"))
		var mail struct {
			Personalizations []struct {
				Subject    string            `json:"subject"`
				CustomArgs map[string]string `json:"custom_args"`
			} `json:"personalizations"`
		}
		require.NoError(t, json.Unmarshal(sg.requests()[0].Body, &mail))
		require.Len(t, mail.Personalizations, 2)
		require.Equal(t, "Welcome, Bob", mail.Personalizations[1].Subject)
		require.Equal(t, jsonNum(nid), mail.Personalizations[1].CustomArgs["notification_id"])
	})
}

func providerChannels(t *testing.T, sg, tw, fcm *fake) map[string]channels.Channel {
	t.Helper()
	return map[string]channels.Channel{
		actions.ChannelEmail: newSendGrid(t, sg),
		actions.ChannelSMS:   newTwilio(t, tw),
		actions.ChannelPush:  newPush(t, fcm),
	}
}

// seedProviderRule stores a collection whose USER_INVITEUSER fires an email,
// an SMS and a push action.
func seedProviderRule(t *testing.T, db *gorm.DB) int64 {
	t.Helper()
	now := time.Now().UnixMilli()
	var cid, eid int64
	require.NoError(t, db.Raw(`INSERT INTO collections (name, status, created_time, updated_time) VALUES (?, 'ACTIVE', ?, ?) RETURNING id`,
		testdb.Name("c"), now, now).Scan(&cid).Error)
	require.NoError(t, db.Raw(`INSERT INTO events (collection_id, name, status, created_time, updated_time) VALUES (?, 'USER_INVITEUSER', 'ACTIVE', ?, ?) RETURNING id`,
		cid, now, now).Scan(&eid).Error)
	for _, a := range []actions.Action{
		{Name: "email", ConfigName: actions.ConfigEmail, Config: actions.Config{Content: actions.Content{Subject: "Welcome, {{FNAME}}", Text: "Hi"}}},
		{Name: "sms", ConfigName: actions.ConfigSMS, Config: actions.Config{Content: actions.Content{Body: "Hi {{FNAME}}, your code"}}},
		{Name: "push", ConfigName: actions.ConfigPush, Config: actions.Config{Content: actions.Content{Title: "Hi {{FNAME}}", Body: "news"}}},
	} {
		a.CollectionID, a.EventID, a.Status, a.CreatedTime, a.UpdatedTime = cid, eid, actions.StatusActive, now, now
		require.NoError(t, db.Create(&a).Error)
	}
	return cid
}

func providerRows(t *testing.T, db *gorm.DB, notificationID int64) map[string][]deliveryRow {
	t.Helper()
	var rows []deliveryRow
	require.NoError(t, db.Raw(`SELECT recipient_index, channel, status, reason, attempts, next_attempt_at, provider, provider_message_id
FROM deliveries WHERE notification_id = ? ORDER BY channel, recipient_index`, notificationID).Scan(&rows).Error)
	out := map[string][]deliveryRow{}
	for _, r := range rows {
		out[r.Channel] = append(out[r.Channel], r)
	}
	return out
}

func jsonNum(n int64) string { b, _ := json.Marshal(n); return string(b) }
