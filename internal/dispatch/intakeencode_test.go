package dispatch_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// The intake encodes a notification's recipients once and stores those
// bytes three times: they must be, byte for byte, what encoding each place's
// value on its own wrote (the notification's recipients, each delivery's
// recipient, and the whole notifications/send envelope detail); and a
// batch's send envelopes go in with one statement.
func TestIntakeStoresRecipientsAsEncodedAndEnvelopesInOneStatement(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		cid, _ := seedRule(t, db, "USER_INVITEUSER", emailAction(), smsAction())
		at := time.UnixMilli(1709786395165)
		clock := func() time.Time { return at }
		in := intake.New(db, actions.NewRules(db), outbox.NewWriter(clock, nil), clock, nil)
		var inserts atomic.Int64
		count := func(tx *gorm.DB) {
			if sql := strings.ToUpper(tx.Statement.SQL.String()); strings.HasPrefix(sql, "INSERT") && strings.Contains(sql, "OUTBOX") {
				inserts.Add(1)
			}
		}
		require.NoError(t, db.Callback().Create().After("gorm:create").Register("test:outbox_create", count))
		require.NoError(t, db.Callback().Raw().After("gorm:raw").Register("test:outbox_raw", count))

		// HTML characters (escaped by encoding/json), non-ASCII text, a
		// numeric macro, names on addresses, several recipients.
		bodies := []string{
			`{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [
			  {"tos": [{"email": "a@example.com", "name": "Ann <A&B>"}], "email": "a2@example.com", "phone": "+15550001",
			   "pushId": "tok-1", "locale": "fr_CA", "id": "user-1", "macros": {"Z": "é \u2028 ü", "A": 42, "LINK": "https://x.test/?a=1&b=<2>"}},
			  {"email": "b@example.com", "macros": {"FNAME": "Bob"}}]}]}`,
			`{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [{"phone": "+15550003", "timezone": "Europe/Paris"}]},
			  {"name": "USER_INVITEUSER", "recipients": [{"email": "c@example.com"}]}]}`,
		}
		actor := auth.Principal{UserID: "7", Roles: []string{auth.RoleSender}, Channel: "API"}
		var subs []intake.Submission
		for i, body := range bodies {
			subs = append(subs, intake.Submission{Source: intake.SourceAPI, Key: "k" + string(rune('0'+i)), Request: request(t, cid, body),
				Correlation: map[string]string{"orderId": "o-1"}, Producer: dispatch.Producer{Team: "growth"}, Actor: &actor})
		}
		out, err := in.Submit(context.Background(), subs)
		require.NoError(t, err)
		require.EqualValues(t, 1, inserts.Load(), "the batch's three send envelopes in one statement")

		var envelopes []outbox.Row
		require.NoError(t, db.Order("id").Find(&envelopes).Error)
		require.Len(t, envelopes, 3)
		e := 0
		for i, o := range out {
			for j, sum := range o.Notifications {
				n := subs[i].Request.Notification[j]
				var stored string
				require.NoError(t, db.Raw("SELECT recipients FROM notifications WHERE id = ?", sum.ID).Scan(&stored).Error)
				want, err := json.Marshal(dispatch.Recipients(n.Recipients))
				require.NoError(t, err)
				require.Equal(t, string(want), stored, "notification %d's recipients", sum.ID)

				var ds []struct {
					RecipientIndex int
					Recipient      string
				}
				require.NoError(t, db.Raw("SELECT recipient_index, recipient FROM deliveries WHERE notification_id = ?", sum.ID).Scan(&ds).Error)
				require.Len(t, ds, 2*len(n.Recipients))
				for _, d := range ds {
					want, err := json.Marshal(n.Recipients[d.RecipientIndex])
					require.NoError(t, err)
					require.Equal(t, string(want), d.Recipient, "delivery recipient %d", d.RecipientIndex)
				}

				// The detail the envelope had when it encoded the recipients
				// itself, with the same envelope id and time.
				env := envelopes[e]
				e++
				detail, err := outbox.EncodeDetail(outbox.Change{DetailType: outbox.NotificationsSend, EntityID: n.Name, CollectionID: cid,
					Payload: map[string]any{"notification": struct {
						Name       string               `json:"name"`
						Recipients []dispatch.Recipient `json:"recipients"`
					}{n.Name, n.Recipients}},
					Actor:    actor,
					Producer: &outbox.Producer{Team: "growth", Correlation: map[string]string{"orderId": "o-1"}},
				}, env.EnvelopeID, at, nil)
				require.NoError(t, err)
				require.Equal(t, detail, env.Detail, "envelope %d", e)
				require.Equal(t, outbox.NotificationsSend, env.DetailType)
				require.Equal(t, cid, env.CollectionID)
				require.Equal(t, at.UnixMilli(), env.CreatedAt)
				require.Nil(t, env.PublishedAt)
				require.Nil(t, env.ParkedAt)
				require.Zero(t, env.Attempts)
				require.Zero(t, env.NextAttemptAt)
				require.Empty(t, env.LastError)
			}
		}
		require.Equal(t, 3, e)
	})
}
