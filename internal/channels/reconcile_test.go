package channels_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/config"
)

// twilioMessage is a message resource as Twilio's Messages list shows it.
type twilioMessage struct {
	Sid                 string `json:"sid"`
	To                  string `json:"to"`
	From                string `json:"from"`
	MessagingServiceSid string `json:"messaging_service_sid,omitempty"`
	Body                string `json:"body"`
	Status              string `json:"status"`
	DateCreated         string `json:"date_created"`
	DateSent            string `json:"date_sent"`
}

// twilioList answers GET .../Messages.json like Twilio: the messages with
// the To and From given, sent within DateSent> and DateSent<, newest first.
func twilioList(msgs ...twilioMessage) func(w http.ResponseWriter, r *http.Request, body []byte, n int) {
	return func(w http.ResponseWriter, r *http.Request, _ []byte, _ int) {
		q := r.URL.Query()
		after, _ := time.Parse(time.RFC3339, q.Get("DateSent>"))
		before, _ := time.Parse(time.RFC3339, q.Get("DateSent<"))
		out := []twilioMessage{}
		for i := len(msgs) - 1; i >= 0; i-- {
			m := msgs[i]
			sent, _ := time.Parse(time.RFC1123Z, m.DateSent)
			if m.To != q.Get("To") || (q.Get("From") != "" && m.From != q.Get("From")) || sent.Before(after) || sent.After(before) {
				continue
			}
			out = append(out, m)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"messages": out, "next_page_uri": nil, "page": 0, "page_size": len(out)})
	}
}

func TestTwilioAcceptedAsksTheMessagesList(t *testing.T) {
	t.Parallel()
	since := time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC)
	until := since.Add(90 * time.Second)
	at := func(d time.Duration) string { return since.Add(d).Format(time.RFC1123Z) }
	const service = "MG0123456789abcdef0123456789abcdef"
	f := newFake(t, twilioList(
		twilioMessage{Sid: "SMold", To: "+15550001", From: "+15005550006", Body: "Hi Ann", DateCreated: at(-time.Hour), DateSent: at(-time.Hour)},
		twilioMessage{Sid: "SMann", To: "+15550001", From: "+15005550006", Body: "Hi Ann", DateCreated: at(10 * time.Second), DateSent: at(11 * time.Second)},
		twilioMessage{Sid: "SMbob", To: "+15550002", From: "+15005550006", Body: "Hi Robert", DateCreated: at(10 * time.Second), DateSent: at(11 * time.Second)},
		twilioMessage{Sid: "SMsvc", To: "+15550003", From: "+15005550099", MessagingServiceSid: service, Body: "Code 1", DateCreated: at(5 * time.Second), DateSent: at(6 * time.Second)},
		twilioMessage{Sid: "SMother", To: "+15550004", From: "+15005550099", MessagingServiceSid: "MGffffffffffffffffffffffffffffffff", Body: "Code 2", DateCreated: at(5 * time.Second), DateSent: at(6 * time.Second)},
	))
	tw := newTwilio(t, f)
	got, err := tw.Accepted(context.Background(), []channels.InDoubt{
		// Two in-doubt deliveries, one message: the first is accepted.
		{DeliveryID: 2, Address: "+1 555 0001", Sender: "+15005550006", Body: "Hi Ann", Since: since, Until: until},
		{DeliveryID: 1, Address: "+15550001", Sender: "+15005550006", Body: "Hi Ann", Since: since, Until: until},
		{DeliveryID: 3, Address: "+15550002", Sender: "+15005550006", Body: "Hi Bob", Since: since, Until: until}, // other body
		{DeliveryID: 4, Address: "+15550003", Sender: service, Body: "Code 1", Since: since, Until: until},
		{DeliveryID: 5, Address: "+15550004", Sender: service, Body: "Code 2", Since: since, Until: until}, // other service
		{DeliveryID: 6, Address: "+15550009", Body: "Hi", Since: since, Until: until},                      // nothing sent
	})
	require.NoError(t, err)
	require.Equal(t, map[int64]string{1: "SMann", 4: "SMsvc"}, got)

	reqs := f.requests()
	require.Len(t, reqs, 5, "one lookup per recipient, sender and body")
	for _, r := range reqs {
		require.Equal(t, http.MethodGet, r.Method)
		require.Equal(t, "/2010-04-01/Accounts/"+testAccountSID+"/Messages.json", r.Path)
		require.Equal(t, since.Add(-time.Minute).Format(time.RFC3339), r.Query.Get("DateSent>"))
		require.Equal(t, until.Add(time.Minute).Format(time.RFC3339), r.Query.Get("DateSent<"))
		switch r.Query.Get("To") {
		case "+15550003", "+15550004":
			require.Empty(t, r.Query.Get("From"), "a Messaging Service picks the number: matched on the results")
		case "+15550009":
			require.Equal(t, "+15005550006", r.Query.Get("From"), "the configured sender when the delivery names none")
		default:
			require.Equal(t, "+15005550006", r.Query.Get("From"))
		}
	}
}

func TestTwilioAcceptedFailsWhenTwilioCannotBeAsked(t *testing.T) {
	t.Parallel()
	f := newFake(t, twilioError(http.StatusServiceUnavailable, 0, "try later"))
	tw := newTwilio(t, f)
	now := time.Now()
	_, err := tw.Accepted(context.Background(), []channels.InDoubt{{DeliveryID: 1, Address: "+15550001", Body: "Hi", Since: now, Until: now}})
	require.ErrorContains(t, err, "HTTP 503")
}

// sgActivity answers GET /v3/messages like the Email Activity API: the
// messages whose query names one of the delivery ids in found.
func sgActivity(found map[int64]string) func(w http.ResponseWriter, r *http.Request, body []byte, n int) {
	return func(w http.ResponseWriter, r *http.Request, _ []byte, _ int) {
		msgs := []map[string]any{}
		for id, msgID := range found {
			if strings.Contains(r.URL.Query().Get("query"), `unique_args['delivery_id']="`+strconv.FormatInt(id, 10)+`"`) {
				msgs = append(msgs, map[string]any{"msg_id": msgID, "from_email": "noreply@example.test", "subject": "Hi",
					"to_email": "a@example.com", "status": "delivered", "opens_count": 0, "clicks_count": 0, "last_event_time": "2026-12-03T15:00:20Z"})
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"messages": msgs})
	}
}

func TestSendGridAcceptedAsksTheEmailActivityAPI(t *testing.T) {
	t.Parallel()
	since := time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC)
	until := since.Add(90 * time.Second)
	f := newFake(t, sgActivity(map[int64]string{7: "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"}))
	sg := newSendGrid(t, f, func(c *config.SendGrid) { c.Reconcile = true })
	got, err := sg.Accepted(context.Background(), []channels.InDoubt{
		{DeliveryID: 7, NotificationID: 70, Address: "a@example.com", Since: since, Until: until},
		{DeliveryID: 8, NotificationID: 70, Address: "b@example.com", Since: since, Until: until},
	})
	require.NoError(t, err)
	require.Equal(t, map[int64]string{7: "14c5d75ce93"}, got, "found: msg_id up to its first dot, as X-Message-Id; not found: left out")

	reqs := f.requests()
	require.Len(t, reqs, 2)
	for _, r := range reqs {
		require.Equal(t, http.MethodGet, r.Method)
		require.Equal(t, "/v3/messages", r.Path)
		require.Equal(t, "Bearer SG.test-key", r.Header.Get("Authorization"))
		require.Equal(t, "10", r.Query.Get("limit"))
	}
	queries := []string{reqs[0].Query.Get("query"), reqs[1].Query.Get("query")}
	require.Contains(t, queries, `unique_args['delivery_id']="7" AND unique_args['notification_id']="70"`+
		` AND last_event_time BETWEEN TIMESTAMP "2026-12-03T14:59:00Z" AND TIMESTAMP "2026-12-03T16:01:30Z"`)
}

func TestSendGridAcceptedNeedsTheSwitchAndAnAnswer(t *testing.T) {
	t.Parallel()
	f := newFake(t, sgActivity(nil))
	_, err := newSendGrid(t, f).Accepted(context.Background(), []channels.InDoubt{{DeliveryID: 1}})
	require.ErrorIs(t, err, channels.ErrCannotReconcile, "channels.sendgrid.reconcile is off by default")
	require.Zero(t, f.count(), "and nothing is asked")

	down := newFake(t, func(w http.ResponseWriter, r *http.Request, _ []byte, _ int) {
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"errors":[{"message":"access forbidden","field":null}]}`))
	})
	_, err = newSendGrid(t, down, func(c *config.SendGrid) { c.Reconcile = true }).Accepted(context.Background(), []channels.InDoubt{{DeliveryID: 1}})
	require.ErrorContains(t, err, "HTTP 403", "an account without the add-on answers 403")
	require.NotErrorIs(t, err, channels.ErrCannotReconcile)
}
