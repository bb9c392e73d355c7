package webhooks_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/channels/webhookout"
	"github.com/notificationservice/notificationservice/internal/collections"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/testdb"
	"github.com/notificationservice/notificationservice/internal/webhooks"
)

var admin = auth.Principal{UserID: "1", Roles: []string{auth.RoleSuperAdmin}, Channel: "CSR"}

// request is one POST a receiver got.
type request struct {
	header http.Header
	body   []byte
	status int // what the receiver answered
}

func (r request) event(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(r.body, &m))
	return m
}

// receiver is a real HTTP endpoint: it echoes HEALTH_CHECKs when echo is
// set, and answers the first failFirst other events with 500.
type receiver struct {
	*httptest.Server
	echo      atomic.Bool
	failFirst atomic.Int32

	mu       sync.Mutex
	requests []request
	failed   atomic.Int32
}

func newReceiver(t *testing.T, echo bool, failFirst int32) *receiver {
	r := &receiver{}
	r.echo.Store(echo)
	r.failFirst.Store(failFirst)
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var ev struct {
			Type        string `json:"type"`
			HealthCheck struct {
				Validation string `json:"validation"`
			} `json:"healthCheck"`
		}
		_ = json.Unmarshal(body, &ev)
		status := http.StatusOK
		answer := "ok"
		switch {
		case ev.Type == outbox.TypeHealthCheck && r.echo.Load():
			answer = `{"validation": "` + ev.HealthCheck.Validation + `"}`
		case ev.Type != outbox.TypeHealthCheck && r.failed.Load() < r.failFirst.Load():
			r.failed.Add(1)
			status = http.StatusInternalServerError
		}
		r.mu.Lock()
		r.requests = append(r.requests, request{header: req.Header.Clone(), body: body, status: status})
		r.mu.Unlock()
		w.WriteHeader(status)
		_, _ = io.WriteString(w, answer)
	}))
	t.Cleanup(r.Close)
	return r
}

// got returns the requests of events other than HEALTH_CHECK, or only the
// HEALTH_CHECKs when health is set.
func (r *receiver) got(t *testing.T, health bool) []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []request
	for _, q := range r.requests {
		if (q.event(t)["type"] == outbox.TypeHealthCheck) == health {
			out = append(out, q)
		}
	}
	return out
}

type clock struct{ at atomic.Int64 }

func (c *clock) now() time.Time      { return time.Unix(0, c.at.Load()) }
func (c *clock) add(d time.Duration) { c.at.Add(int64(d)) }

type bundle struct {
	svc    *webhooks.Service
	sender *webhooks.Sender
	db     *gorm.DB
	w      *outbox.Writer
	cid    int64
	clock  *clock
}

func testConfig(allowPrivate bool) config.Webhooks {
	cfg := config.Default().Webhooks
	cfg.AllowPrivateNetworks = allowPrivate
	cfg.BackoffBase, cfg.BackoffMax = time.Millisecond, 2*time.Millisecond
	cfg.ValidationTimeout, cfg.Timeout = 5*time.Second, 5*time.Second
	return cfg
}

func setup(t *testing.T, db *gorm.DB, cfg config.Webhooks) bundle {
	t.Helper()
	c := &clock{}
	c.at.Store(time.Now().UnixNano())
	w := outbox.NewWriter(c.now, nil)
	col, err := collections.New(db, w, c.now).CreateCollection(context.Background(), admin, collections.CollectionInput{Name: testdb.Name("hooks")})
	require.NoError(t, err)
	client := webhookout.New(webhookout.Config{Timeout: cfg.Timeout, AllowPrivateNetworks: cfg.AllowPrivateNetworks})
	svc, err := webhooks.New(db, w, cfg, client, c.now)
	require.NoError(t, err)
	b := bundle{svc: svc, sender: svc.Sender(testLogger(t)), db: db, w: w, cid: col.ID, clock: c}
	// The collection's own envelope, before any endpoint exists: old
	// enough that the fan-out marks it, no relay running here to do it.
	c.add(webhooks.RelayFirst)
	b.drain(t)
	return b
}

// send records a notifications/send envelope, as intake does for a send.
func (b bundle) send(t *testing.T, name string) {
	t.Helper()
	err := b.db.Transaction(func(tx *gorm.DB) error {
		return b.w.Record(context.Background(), tx, outbox.Change{
			DetailType: outbox.NotificationsSend, EntityID: name, CollectionID: b.cid, Actor: admin,
			Payload: map[string]any{"notification": map[string]any{"name": name, "recipients": []any{map[string]string{"email": "a@example.com"}}}},
		})
	})
	require.NoError(t, err)
}

// drain runs sender cycles until one does nothing, moving the clock past
// every retry delay in between; it fails after a bounded number of rounds.
func (b bundle) drain(t *testing.T) {
	t.Helper()
	for range 200 {
		n, err := b.sender.Cycle(context.Background())
		require.NoError(t, err)
		if n == 0 {
			var pending int64
			// Messages of an endpoint that is not ACTIVE wait for it.
			require.NoError(t, b.db.Table("webhook_messages").Joins("JOIN webhooks ON webhooks.id = webhook_messages.endpoint_id").
				Where("webhook_messages.status = 'pending' AND webhooks.state = 'ACTIVE'").Count(&pending).Error)
			if pending == 0 {
				return
			}
		}
		b.clock.add(time.Second)
	}
	t.Fatal("the sender did not settle")
}

func (b bundle) create(t *testing.T, url string, types ...string) webhooks.WithSecret {
	t.Helper()
	out, err := b.svc.Create(context.Background(), admin, b.cid, webhooks.Input{URL: url, Description: "test", EventTypes: types})
	require.NoError(t, err)
	return out
}

func verify(t *testing.T, secret string, q request) error {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	require.NoError(t, err)
	return wh.VerifyIgnoringTimestamp(q.body, q.header)
}

// An endpoint that echoes is validated, then receives the send's typed
// event, signed so that the standard-webhooks library verifies it.
func TestEchoingEndpointReceivesSignedEvents(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db, testConfig(true))
		rcv := newReceiver(t, true, 0)
		out := b.create(t, rcv.URL, outbox.TypeNotificationAccepted)
		require.True(t, strings.HasPrefix(out.Secret, "whsec_"), out.Secret)
		require.Equal(t, webhooks.StateActive, out.Webhook.State)
		require.NotNil(t, out.Webhook.LastValidation)
		require.True(t, out.Webhook.LastValidation.OK)
		require.Equal(t, 200, out.Webhook.LastValidation.StatusCode)

		hc := rcv.got(t, true)
		require.Len(t, hc, 1)
		ev := hc[0].event(t)
		require.True(t, strings.HasPrefix(ev["id"].(string), "evt_"))
		require.Equal(t, "HEALTH_CHECK", ev["type"])
		require.Equal(t, hc[0].header.Get("webhook-id"), ev["id"])
		_, err := time.Parse(time.RFC3339, ev["timestamp"].(string))
		require.NoError(t, err)
		require.Equal(t, itoa(b.cid), ev["companyId"])
		require.NotEmpty(t, ev["healthCheck"].(map[string]any)["validation"])
		require.NoError(t, verify(t, out.Secret, hc[0]))

		b.send(t, "USER_INVITEUSER")
		b.drain(t)
		events := rcv.got(t, false)
		require.Len(t, events, 1)
		got := events[0].event(t)
		require.Equal(t, outbox.TypeNotificationAccepted, got["type"])
		require.Equal(t, "USER_INVITEUSER", got["notification"].(map[string]any)["name"])
		require.Equal(t, events[0].header.Get("webhook-id"), got["id"])
		require.NoError(t, verify(t, out.Secret, events[0]), "the signature must verify with the endpoint's secret")
		other, err := webhookout.NewSecret()
		require.NoError(t, err)
		require.Error(t, verify(t, other, events[0]), "another secret must not verify")
	})
}

// One that answers without the echo stays PENDING_VALIDATION, says why, and
// receives nothing but the check.
func TestNonEchoingEndpointStaysPending(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db, testConfig(true))
		rcv := newReceiver(t, false, 0)
		out := b.create(t, rcv.URL)
		require.Equal(t, webhooks.StatePendingValidation, out.Webhook.State)
		require.False(t, out.Webhook.LastValidation.OK)
		require.Equal(t, 200, out.Webhook.LastValidation.StatusCode)
		require.Contains(t, out.Webhook.LastValidation.Error, "without echoing")

		b.send(t, "USER_INVITEUSER")
		b.drain(t)
		require.Empty(t, rcv.got(t, false), "a pending endpoint receives no events")
		var queued int64
		require.NoError(t, db.Table("webhook_messages").Count(&queued).Error)
		require.Zero(t, queued, "nor are its events queued for after its validation")

		// Validating again once it echoes makes it ACTIVE.
		rcv.echo.Store(true)
		e, err := b.svc.Validate(context.Background(), admin, b.cid, out.Webhook.ID)
		require.NoError(t, err)
		require.Equal(t, webhooks.StateActive, e.State)
	})
}

// A receiver failing with 500 and then recovering gets every event, each
// webhook-id answered 2xx exactly once; the attempts list shows the failures.
func TestRetriesDeliverEveryEventOnce(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db, testConfig(true))
		rcv := newReceiver(t, true, 3)
		out := b.create(t, rcv.URL, outbox.TypeNotificationAccepted)
		for _, n := range []string{"A", "B", "C"} {
			b.send(t, n)
		}
		b.drain(t)

		ok := map[string]int{}
		seen := map[string]int{}
		for _, q := range rcv.got(t, false) {
			id := q.header.Get("webhook-id")
			require.Equal(t, id, q.event(t)["id"], "webhook-id is the event id")
			seen[id]++
			if q.status == http.StatusOK {
				ok[id]++
			}
		}
		require.Len(t, ok, 3, "every event arrived")
		for id, n := range ok {
			require.Equal(t, 1, n, "%s was accepted more than once", id)
		}
		total := 0
		for _, n := range seen {
			total += n
		}
		require.Equal(t, 6, total, "3 failures retried with the same webhook-id, then 3 successes")

		attempts, err := b.svc.Attempts(context.Background(), admin, b.cid, out.Webhook.ID, webhooks.Page{Limit: 100})
		require.NoError(t, err)
		require.Len(t, attempts, 7, "the HEALTH_CHECK and six POSTs")
		failed := 0
		for _, a := range attempts {
			if a.StatusCode == 500 {
				failed++
				require.Contains(t, a.Error, "500")
			}
		}
		require.Equal(t, 3, failed)
	})
}

// A URL pointing at 127.0.0.1 is refused unless private networks are allowed.
func TestLoopbackRefusedUnlessAllowed(t *testing.T) {
	t.Parallel()
	db, _ := testdb.SQLite(t)
	b := setup(t, db, testConfig(false))
	for _, url := range []string{"http://127.0.0.1:9/hook", "https://127.0.0.1/hook", "https://localhost/hook", "https://169.254.169.254/", "https://[::1]/x"} {
		_, err := b.svc.Create(context.Background(), admin, b.cid, webhooks.Input{URL: url})
		require.Error(t, err, url)
		require.Equal(t, apperr.InvalidArgument, apperr.KindOf(err), url)
	}
	_, err := b.svc.Create(context.Background(), admin, b.cid, webhooks.Input{URL: "http://example.com/hook"})
	require.Equal(t, apperr.InvalidArgument, apperr.KindOf(err), "http:// needs a private address that is allowed")

	allowed := setup(t, db, testConfig(true))
	rcv := newReceiver(t, true, 0)
	require.Equal(t, webhooks.StateActive, allowed.create(t, rcv.URL).Webhook.State)
}

// The secret is shown on create and rotate only: no read, no envelope and
// no stored column carries it in clear.
func TestSecretShownOnlyOnCreateAndRotate(t *testing.T) {
	t.Parallel()
	db, _ := testdb.SQLite(t)
	b := setup(t, db, testConfig(true))
	rcv := newReceiver(t, true, 0)
	out := b.create(t, rcv.URL)
	rot, err := b.svc.RotateSecret(context.Background(), admin, b.cid, out.Webhook.ID)
	require.NoError(t, err)
	require.NotEqual(t, out.Secret, rot.Secret)

	e, err := b.svc.Get(context.Background(), admin, b.cid, out.Webhook.ID)
	require.NoError(t, err)
	raw, err := json.Marshal(e)
	require.NoError(t, err)
	require.NotContains(t, string(raw), "secret")
	require.NotContains(t, string(raw), "whsec_")

	var details []string
	require.NoError(t, db.Table("outbox").Pluck("detail", &details).Error)
	var stored []string
	require.NoError(t, db.Table("webhooks").Pluck("secret || previous_secret", &stored).Error)
	for _, s := range []string{out.Secret, rot.Secret, strings.TrimPrefix(out.Secret, "whsec_"), strings.TrimPrefix(rot.Secret, "whsec_")} {
		for _, d := range append(details, stored...) {
			require.NotContains(t, d, s)
		}
	}
}

// During the rotation overlap both secrets sign; after it, only the new one.
func TestRotationOverlapSignsWithBoth(t *testing.T) {
	t.Parallel()
	db, _ := testdb.SQLite(t)
	cfg := testConfig(true)
	b := setup(t, db, cfg)
	rcv := newReceiver(t, true, 0)
	out := b.create(t, rcv.URL)
	rot, err := b.svc.RotateSecret(context.Background(), admin, b.cid, out.Webhook.ID)
	require.NoError(t, err)

	_, err = b.svc.Validate(context.Background(), admin, b.cid, out.Webhook.ID)
	require.NoError(t, err)
	hc := rcv.got(t, true)
	last := hc[len(hc)-1]
	require.Len(t, strings.Fields(last.header.Get("webhook-signature")), 2)
	require.NoError(t, verify(t, out.Secret, last), "the old secret still verifies during the overlap")
	require.NoError(t, verify(t, rot.Secret, last), "the new secret verifies")

	b.clock.add(cfg.RotationOverlap)
	_, err = b.svc.Validate(context.Background(), admin, b.cid, out.Webhook.ID)
	require.NoError(t, err)
	hc = rcv.got(t, true)
	last = hc[len(hc)-1]
	require.Len(t, strings.Fields(last.header.Get("webhook-signature")), 1)
	require.Error(t, verify(t, out.Secret, last), "the old secret stops signing after the overlap")
	require.NoError(t, verify(t, rot.Secret, last))
}

// An endpoint failing for webhooks.disableAfter is DISABLED and comes back
// by validating again.
func TestFailingEndpointIsDisabled(t *testing.T) {
	t.Parallel()
	db, _ := testdb.SQLite(t)
	cfg := testConfig(true)
	cfg.DisableAfter = time.Hour
	b := setup(t, db, cfg)
	rcv := newReceiver(t, true, 1000)
	out := b.create(t, rcv.URL, outbox.TypeNotificationAccepted)
	b.send(t, "A")
	_, err := b.sender.Cycle(context.Background())
	require.NoError(t, err)
	b.clock.add(time.Hour)
	b.drain(t)
	e, err := b.svc.Get(context.Background(), admin, b.cid, out.Webhook.ID)
	require.NoError(t, err)
	require.Equal(t, webhooks.StateDisabled, e.State)

	rcv.failFirst.Store(0)
	e, err = b.svc.Validate(context.Background(), admin, b.cid, out.Webhook.ID)
	require.NoError(t, err)
	require.Equal(t, webhooks.StateActive, e.State)
}

func TestRetryDelayHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	for n := 1; n < 12; n++ {
		d := webhooks.RetryDelay(time.Second, time.Hour, n, 0)
		require.Positive(t, d)
		require.LessOrEqual(t, d, 90*time.Minute, "capped at max plus jitter")
	}
	require.Equal(t, 2*time.Hour, webhooks.RetryDelay(time.Second, time.Hour, 1, 2*time.Hour))
	require.Greater(t, webhooks.RetryDelay(time.Second, time.Hour, 10, 0), 100*time.Second, "exponential")
}

// With no ACTIVE endpoint (the default: nobody subscribed), a sender cycle
// is one statement that marks the rows fanned out; it used to read every
// row's detail, each collection's endpoints and the message table in eight.
// Rows younger than RelayFirst it leaves to the relay, whose claim marks
// them (TestRelayMarksRowsFannedOutWhenNoEndpointIsActive).
func TestSenderWithoutEndpointsIsOneStatement(t *testing.T) {
	t.Parallel()
	db, _ := testdb.Postgres(t)
	b := setup(t, db, testConfig(true))
	for i := range 3 {
		b.send(t, "n"+itoa(int64(i)))
	}
	_, err := b.sender.Cycle(context.Background())
	require.NoError(t, err)
	var fresh int64
	require.NoError(t, db.Table("outbox").Where("fanned_out_at IS NULL").Count(&fresh).Error)
	require.EqualValues(t, 3, fresh, "rows younger than RelayFirst are the relay's to mark")
	b.clock.add(webhooks.RelayFirst)
	var statements atomic.Int32
	count := func(*gorm.DB) { statements.Add(1) }
	cb := db.Callback()
	require.NoError(t, cb.Query().Before("gorm:query").Register("count", count))
	require.NoError(t, cb.Raw().Before("gorm:raw").Register("count", count))
	require.NoError(t, cb.Row().Before("gorm:row").Register("count", count))
	n, err := b.sender.Cycle(context.Background())
	require.NoError(t, cb.Query().Remove("count"))
	require.NoError(t, cb.Raw().Remove("count"))
	require.NoError(t, cb.Row().Remove("count"))
	require.NoError(t, err)
	require.Zero(t, n)
	require.EqualValues(t, 1, statements.Load())
	var left int64
	require.NoError(t, db.Table("outbox").Where("fanned_out_at IS NULL").Count(&left).Error)
	require.Zero(t, left, "every row is fanned out")
}
