package dispatch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/delivery"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/schedule"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// gateRow is a delivery as the gates leave it.
type gateRow struct {
	Status        string
	Reason        string
	ReasonDetail  string
	Attempts      int
	NextAttemptAt int64
	Recipient     string
}

func gateRows(t *testing.T, db *gorm.DB, q string, args ...any) []gateRow {
	t.Helper()
	var rows []gateRow
	require.NoError(t, db.Raw("SELECT status, reason, reason_detail, attempts, next_attempt_at, recipient FROM deliveries WHERE "+q+" ORDER BY id", args...).Scan(&rows).Error)
	return rows
}

// clock is a settable test clock, safe for concurrent readers.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// quietRule seeds a collection in zone with quiet hours w (nil: none) and
// the email actions acts of USER_INVITEUSER.
func quietRule(t *testing.T, db *gorm.DB, zone string, w *schedule.Window, acts ...actions.Action) (int64, []int64) {
	t.Helper()
	cid, ids := seedRule(t, db, "USER_INVITEUSER", acts...)
	var qh any
	if w != nil {
		b, _ := json.Marshal(w)
		qh = string(b)
	}
	require.NoError(t, db.Exec("UPDATE collections SET timezone = ?, quiet_hours = ? WHERE id = ?", zone, qh, cid).Error)
	return cid, ids
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	require.NoError(t, err)
	return v
}

// A delivery due at 22:30 in Europe/Paris, inside the collection's quiet
// hours 21:00–08:00, waits as scheduled (quiet_hours) and goes out at
// 08:00 Paris time, not a minute before: on the night the clocks go
// forward and on the night they go back. A recipient in New York (16:30
// there) is not held; an urgent action and an action whose quietHours is
// null ignore the window.
func TestQuietHoursDeferToTheWindowsEnd(t *testing.T) {
	t.Parallel()
	for _, night := range []struct{ name, due, end string }{
		{"spring forward", "2026-03-28T22:30:00+01:00", "2026-03-29T08:00:00+02:00"},
		{"fall back", "2026-10-24T22:30:00+02:00", "2026-10-25T08:00:00+01:00"},
	} {
		t.Run(night.name, func(t *testing.T) {
			t.Parallel()
			testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
				ctx := context.Background()
				plain := emailAction()
				urgent := emailAction()
				urgent.Name, urgent.Config.Urgent = "urgent", true
				off := emailAction()
				off.Name, off.Config.QuietHours = "off", actions.QuietHours{Set: true}
				cid, ids := quietRule(t, db, "Europe/Paris", &schedule.Window{Start: "21:00", End: "08:00"}, plain, urgent, off)
				clk := &clock{t: mustTime(t, night.due)}
				sandbox := channels.NewSandbox(db, discard(), nil)
				disp := delivery.New(db, map[string]channels.Channel{"email": sandbox}, testConfig(), delivery.Senders{}, discard(), clk.now)
				in := intake.New(db, actions.NewRules(db), outbox.NewWriter(nil, nil), clk.now, nil)
				_, err := in.Submit(ctx, []intake.Submission{{Source: intake.SourceQueue, Request: request(t, cid,
					`{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [
					  {"email": "paris@example.com", "macros": {"FNAME": "A"}},
					  {"email": "ny@example.com", "timezone": "America/New_York", "macros": {"FNAME": "B"}}]}]}`)}})
				require.NoError(t, err)

				runUntilIdle(t, disp)
				held := gateRows(t, db, "action_id = ? AND status = 'scheduled'", ids[0])
				require.Len(t, held, 1, "only the Paris recipient of the plain action waits")
				require.Contains(t, held[0].Recipient, "paris@example.com")
				require.Equal(t, dispatch.ReasonQuietHours, held[0].Reason)
				require.Equal(t, mustTime(t, night.end).UnixMilli(), held[0].NextAttemptAt)
				require.Contains(t, held[0].ReasonDetail, "quiet hours 21:00–08:00 Europe/Paris")
				require.Zero(t, held[0].Attempts, "the deferral is not an attempt")
				require.Equal(t, int64(5), countRows(t, db, "SELECT COUNT(*) FROM deliveries WHERE notification_id IN (SELECT id FROM notifications WHERE collection_id = ?) AND status = 'sent'", cid),
					"New York, and both recipients of the urgent and the null-quietHours actions")

				clk.set(mustTime(t, night.end).Add(-time.Minute))
				n, err := disp.RunOnce(ctx)
				require.NoError(t, err)
				require.Zero(t, n, "not before 08:00 Paris time")
				clk.set(mustTime(t, night.end))
				n, err = disp.RunOnce(ctx)
				require.NoError(t, err)
				require.Equal(t, 1, n)
				sent := gateRows(t, db, "action_id = ? AND recipient LIKE ?", ids[0], "%paris@%")
				require.Equal(t, dispatch.StatusSent, sent[0].Status)
				require.Equal(t, 1, sent[0].Attempts)
			})
		})
	}
}

// A delivery deferred several times keeps all its attempts: each quiet
// hours deferral gives back the attempt its claim counted.
func TestQuietHoursDeferralsCostNoAttempt(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		cid, _ := quietRule(t, db, "UTC", &schedule.Window{Start: "21:00", End: "08:00"}, emailAction())
		busy := func() error { return channels.Retryable("scripted", "503 busy", 14*time.Hour, nil) }
		ch := &scripted{errs: []error{busy(), busy()}}
		cfg := testConfig()
		cfg.MaxAttempts = 3
		cfg.BackoffMax = 24 * time.Hour
		clk := &clock{t: mustTime(t, "2026-06-01T22:00:00Z")}
		disp := delivery.New(db, map[string]channels.Channel{"email": ch}, cfg, delivery.Senders{}, discard(), clk.now)
		in := intake.New(db, actions.NewRules(db), outbox.NewWriter(nil, nil), clk.now, nil)
		_, err := in.Submit(ctx, []intake.Submission{{Source: intake.SourceQueue, Request: request(t, cid,
			`{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [{"email": "a@example.com", "macros": {"FNAME": "A"}}]}]}`)}})
		require.NoError(t, err)
		row := func() gateRow {
			return gateRows(t, db, "notification_id IN (SELECT id FROM notifications WHERE collection_id = ?)", cid)[0]
		}

		runUntilIdle(t, disp) // 22:00: deferred to 08:00
		require.Equal(t, dispatch.StatusScheduled, row().Status)
		require.Zero(t, row().Attempts)
		clk.set(mustTime(t, "2026-06-02T08:00:00Z"))
		runUntilIdle(t, disp) // attempt 1 fails; Retry-After puts the retry at 22:00
		require.Equal(t, dispatch.StatusPending, row().Status)
		require.Equal(t, 1, row().Attempts)
		clk.set(mustTime(t, "2026-06-02T22:00:00Z"))
		runUntilIdle(t, disp) // inside the window again: deferred
		require.Equal(t, dispatch.StatusScheduled, row().Status)
		require.Equal(t, 1, row().Attempts, "the deferral gave its attempt back")
		clk.set(mustTime(t, "2026-06-03T08:00:00Z"))
		runUntilIdle(t, disp) // attempt 2 fails: one attempt left of 3
		r := row()
		require.Equal(t, dispatch.StatusPending, r.Status, r.Reason)
		require.Equal(t, 2, r.Attempts)
		require.Len(t, ch.calls, 2)
	})
}

func throttled(limit int, window, key string) actions.Action {
	a := emailAction()
	a.Name = "throttled " + key
	a.Config.Throttle = &actions.Throttle{Limit: limit, Window: window, Key: key}
	return a
}

// A throttle of 3 per hour lets exactly 3 of 10 deliveries to one
// recipient through while two Dispatchers (two instances on one database)
// claim them concurrently; the other 7 are skipped throttled. The next
// window lets 3 more through.
func TestThrottleIsExactAcrossInstances(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		cid, ids := quietRule(t, db, "UTC", nil, throttled(3, "1h", ""))
		clk := &clock{t: mustTime(t, "2026-06-01T10:10:00Z")}
		sandbox := channels.NewSandbox(db, discard(), nil)
		cfg := testConfig()
		cfg.ClaimBatch = 1 // many claims, interleaved between the two
		a := delivery.New(db, map[string]channels.Channel{"email": sandbox}, cfg, delivery.Senders{}, discard(), clk.now)
		b := delivery.New(db, map[string]channels.Channel{"email": sandbox}, cfg, delivery.Senders{}, discard(), clk.now)
		in := intake.New(db, actions.NewRules(db), outbox.NewWriter(nil, nil), clk.now, nil)
		submit := func() {
			for i := range 10 {
				// The same person (id u1) at a different address each time:
				// the id is the key.
				_, err := in.Submit(ctx, []intake.Submission{{Source: intake.SourceQueue, Request: request(t, cid, fmt.Sprintf(
					`{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [{"id": "u1", "email": "u1+%d@example.com", "macros": {"FNAME": "A"}}]}]}`, i))}})
				require.NoError(t, err)
			}
		}
		drain := func() {
			var g errgroup.Group
			for _, d := range []*delivery.Dispatcher{a, b} {
				g.Go(func() error {
					for {
						n, err := d.RunOnce(ctx)
						if err != nil || n == 0 {
							return err
						}
					}
				})
			}
			require.NoError(t, g.Wait())
		}
		count := func(status, reason string) int64 {
			return countRows(t, db, "SELECT COUNT(*) FROM deliveries WHERE action_id = ? AND status = ? AND reason = ?", ids[0], status, reason)
		}
		submit()
		drain()
		require.EqualValues(t, 3, countRows(t, db, "SELECT COUNT(*) FROM deliveries WHERE action_id = ? AND status = 'sent'", ids[0]))
		require.EqualValues(t, 7, count(dispatch.StatusSkipped, dispatch.ReasonThrottled))
		skipped := gateRows(t, db, "action_id = ? AND status = 'skipped'", ids[0])[0]
		require.Equal(t, "throttle: 3 per 1h per recipient reached in the window from 2026-06-01T10:00:00Z", skipped.ReasonDetail)
		require.Zero(t, skipped.Attempts, "a throttled delivery was never attempted")

		// The next window (11:00–12:00) lets 3 more through.
		clk.set(mustTime(t, "2026-06-01T11:00:00Z"))
		submit()
		drain()
		require.EqualValues(t, 6, countRows(t, db, "SELECT COUNT(*) FROM deliveries WHERE action_id = ? AND status = 'sent'", ids[0]))
		require.EqualValues(t, 14, count(dispatch.StatusSkipped, dispatch.ReasonThrottled))

		// Ended windows are pruned.
		cfg.Retention = 30 * 24 * time.Hour
		clk.set(mustTime(t, "2026-06-01T12:00:00Z"))
		p, err := delivery.New(db, nil, cfg, delivery.Senders{}, discard(), clk.now).Prune(ctx)
		require.NoError(t, err)
		require.EqualValues(t, 2, p.ThrottleCounters)
	})
}

// recipient+event counts the deliveries of every action of the event that
// declares it (per recipient); recipient counts each action's alone, and a
// recipient without an id is keyed by its address.
func TestThrottleKeys(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		cid, ids := quietRule(t, db, "UTC", nil,
			throttled(3, "1h", actions.ThrottleRecipientEvent), throttled(3, "1h", actions.ThrottleRecipientEvent), throttled(2, "1h", actions.ThrottleRecipient))
		clk := &clock{t: mustTime(t, "2026-06-01T10:10:00Z")}
		sandbox := channels.NewSandbox(db, discard(), nil)
		disp := delivery.New(db, map[string]channels.Channel{"email": sandbox}, testConfig(), delivery.Senders{}, discard(), clk.now)
		in := intake.New(db, actions.NewRules(db), outbox.NewWriter(nil, nil), clk.now, nil)
		for range 5 {
			_, err := in.Submit(ctx, []intake.Submission{{Source: intake.SourceQueue, Request: request(t, cid,
				`{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [{"email": "A@example.com", "macros": {"FNAME": "A"}}, {"email": "b@example.com", "macros": {"FNAME": "B"}}]}]}`)}})
			require.NoError(t, err)
		}
		runUntilIdle(t, disp)
		sent := func(actionIDs []int64, email string) int64 {
			return countRows(t, db, "SELECT COUNT(*) FROM deliveries WHERE action_id IN ? AND status = 'sent' AND recipient LIKE ?", actionIDs, "%"+email+"%")
		}
		require.EqualValues(t, 3, sent(ids[:2], "A@example.com"), "the two recipient+event actions share 3")
		require.EqualValues(t, 3, sent(ids[:2], "b@example.com"))
		require.EqualValues(t, 2, sent(ids[2:], "A@example.com"), "the recipient action counts alone")
		require.EqualValues(t, 2, sent(ids[2:], "b@example.com"))
	})
}

// A delivery counts against its throttle once: not while quiet hours defer
// it (the throttle comes after them), and not again when it is retried
// after a provider error, so a limit of 1 still lets its one delivery out.
func TestThrottleCountsADeliveryOnce(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		cid, ids := quietRule(t, db, "UTC", &schedule.Window{Start: "21:00", End: "08:00"}, throttled(1, "24h", ""))
		ch := &scripted{errs: []error{channels.Retryable("scripted", "503 busy", time.Minute, nil)}}
		clk := &clock{t: mustTime(t, "2026-06-01T22:00:00Z")}
		disp := delivery.New(db, map[string]channels.Channel{"email": ch}, testConfig(), delivery.Senders{}, discard(), clk.now)
		in := intake.New(db, actions.NewRules(db), outbox.NewWriter(nil, nil), clk.now, nil)
		_, err := in.Submit(ctx, []intake.Submission{{Source: intake.SourceQueue, Request: request(t, cid,
			`{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [{"email": "a@example.com", "macros": {"FNAME": "A"}}]}]}`)}})
		require.NoError(t, err)
		counted := func() int64 {
			return countRows(t, db, "SELECT COALESCE(SUM(n), 0) FROM throttle_counters WHERE collection_id = ?", cid)
		}

		runUntilIdle(t, disp)
		require.Equal(t, dispatch.StatusScheduled, gateRows(t, db, "action_id = ?", ids[0])[0].Status)
		require.Zero(t, counted(), "a deferred delivery is not counted")
		clk.set(mustTime(t, "2026-06-02T08:00:00Z"))
		runUntilIdle(t, disp) // counted, sent, refused by the provider
		require.Equal(t, dispatch.StatusPending, gateRows(t, db, "action_id = ?", ids[0])[0].Status)
		clk.set(mustTime(t, "2026-06-02T08:05:00Z"))
		runUntilIdle(t, disp) // the retry is not counted again
		require.Equal(t, dispatch.StatusSent, gateRows(t, db, "action_id = ?", ids[0])[0].Status)
		require.EqualValues(t, 1, counted())
	})
}
