package webhooks

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/channels/webhookout"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/retry"
	"github.com/notificationservice/notificationservice/internal/store"
)

// Message statuses.
const (
	messagePending   = "pending"
	messageDelivered = "delivered"
	messageFailed    = "failed" // retried for webhooks.retryFor without a 2xx
)

// message is one (endpoint, typed event) to deliver.
type message struct {
	ID            int64 `gorm:"primaryKey"`
	EndpointID    int64
	EventID       string // the webhook-id: the same on every retry
	EventType     string
	Body          string // the exact bytes signed and sent
	Status        string
	Attempts      int
	NextAttemptAt int64
	LastError     string
	CreatedAt     int64 `gorm:"autoCreateTime:false"`
}

func (message) TableName() string { return "webhook_messages" }

// sendConcurrency bounds the POSTs one cycle has in flight, so one slow
// endpoint cannot hold up the others' messages for a whole timeout each.
const sendConcurrency = 8

// system is the author recorded on the envelope of a change the sender
// makes itself (disabling an endpoint).
var system = auth.Principal{UserID: "notificationservice", Roles: []string{}, Channel: "SYSTEM"}

// Sender turns committed outbox envelopes into webhook messages and delivers
// them. Fan-out: it claims outbox rows not yet fanned out, and in one
// transaction inserts one message per matching ACTIVE endpoint (unique per
// endpoint and event, so a repeat inserts nothing) and marks the rows; a
// crash before the commit leaves the rows to be claimed again. Delivery: it
// leases due messages of ACTIVE endpoints, POSTs them signed, and records
// each outcome; a crash after a POST and before its record sends the same
// webhook-id again, which receivers deduplicate.
type Sender struct {
	s    *Service
	log  *slog.Logger
	wake chan struct{}

	activeSeenAt atomic.Int64 // when a cycle last found an ACTIVE endpoint, unix ns
	backlog      atomic.Bool  // the last cycle without endpoints marked a full batch
}

// NoActiveEndpoint is the SQL condition, true when no endpoint is ACTIVE,
// under which the outbox relay marks the rows it claims fanned out in the
// same statement (outbox.WithFanoutShortcut): the fan-out then has nothing
// left to mark in a service without subscribers, and each envelope is
// written twice, not three times. It is the test fanoutWithoutEndpoints
// makes, in the relay's statement's snapshot.
const NoActiveEndpoint = "NOT EXISTS (SELECT 1 FROM webhooks WHERE state = '" + StateActive + "')"

// relayFirst is how old a row must be before the fan-out marks it while
// no endpoint is ACTIVE: a younger row is left to the relay's claim, which
// marks it in the UPDATE it makes anyway (NoActiveEndpoint). An older one
// is one the relay has not claimed, its sink down or not running, and the
// fan-out marks it itself as before.
const relayFirst = 5 * time.Second

// activeRecheck is how long after finding an ACTIVE endpoint the sender
// goes straight to the full fan-out instead of asking again whether any
// endpoint is ACTIVE.
const activeRecheck = time.Second

// Sender returns the registry's sender.
func (s *Service) Sender(log *slog.Logger) *Sender {
	return &Sender{s: s, log: log, wake: make(chan struct{}, 1)}
}

// Notify wakes the sender (new envelopes committed); it never blocks.
func (x *Sender) Notify() {
	select {
	case x.wake <- struct{}{}:
	default:
	}
}

// Run fans out and delivers every webhooks.pollInterval, or sooner when
// notified, until ctx ends.
func (x *Sender) Run(ctx context.Context) error {
	t := time.NewTicker(x.s.cfg.PollInterval)
	defer t.Stop()
	for {
		if _, err := x.Cycle(ctx); err != nil && ctx.Err() == nil {
			x.log.Warn("webhooks: cycle failed", "error", err)
		}
		if !x.sleep(ctx, t) {
			return nil
		}
	}
}

// sleep waits for the next tick or wake and reports false when ctx ends.
// While no endpoint is ACTIVE a wake for new envelopes has nothing for the
// fan-out: the relay marks them as it publishes them (NoActiveEndpoint),
// and the poll is soon enough to see an endpoint become ACTIVE or a row
// the relay left. Each statement that found nothing cost a third of the
// UPDATE it replaced, once per committed send.
func (x *Sender) sleep(ctx context.Context, t *time.Ticker) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case <-x.wake:
			if !x.idle(ctx) {
				return true
			}
		}
	}
}

// idle reports whether no endpoint is ACTIVE, as the subscriber snapshot
// says (an endpoint validated on any instance drops it), and the last
// cycle left no backlog of rows to mark (PostgreSQL: the only dialect with
// the shortcut).
func (x *Sender) idle(ctx context.Context) bool {
	return store.IsPostgres(x.s.db) && !x.backlog.Load() && !x.s.subs.any(ctx)
}

// Cycle runs one fan-out and one delivery round and reports how many
// messages it created and sent.
func (x *Sender) Cycle(ctx context.Context) (int, error) {
	if store.IsPostgres(x.s.db) && time.Since(time.Unix(0, x.activeSeenAt.Load())) >= activeRecheck {
		active, err := x.fanoutWithoutEndpoints(ctx)
		if err != nil || !active {
			// No endpoint is ACTIVE: nothing was to be created, and nothing
			// can be delivered (only messages of ACTIVE endpoints are).
			return 0, err
		}
		x.activeSeenAt.Store(time.Now().UnixNano())
	}
	created, err := x.fanout(ctx)
	if err != nil {
		return created, err
	}
	sent, err := x.deliver(ctx)
	return created + sent, err
}

// fanoutWithoutEndpoints is the fan-out of a service no one has subscribed
// to, the default: in one statement, when no endpoint is ACTIVE, it marks the
// next batch of rows older than relayFirst fanned out, reading no detail
// (the relay marks the others as it publishes them). It reports whether an
// endpoint is ACTIVE, in which case it changed nothing. The full fan-out
// took five statements and the delivery round three more per cycle, and a
// cycle runs after every commit that records an envelope. It sees the same
// snapshot the full fan-out would: an endpoint committed after the
// statement began gets the rows committed after it, as before.
func (x *Sender) fanoutWithoutEndpoints(ctx context.Context) (bool, error) {
	var out struct {
		Active bool
		Marked int
	}
	now := x.s.now()
	err := x.s.db.WithContext(ctx).Raw(`WITH ep AS (SELECT EXISTS (SELECT 1 FROM webhooks WHERE state = ?) AS active),
marked AS (
  UPDATE outbox SET fanned_out_at = ? WHERE NOT (SELECT active FROM ep) AND id IN (
    SELECT id FROM outbox WHERE fanned_out_at IS NULL AND created_at <= ? ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED)
  RETURNING 1)
SELECT (SELECT active FROM ep) AS active, (SELECT count(*) FROM marked) AS marked`,
		StateActive, now.UnixMilli(), now.Add(-relayFirst).UnixMilli(), x.s.cfg.BatchSize).Scan(&out).Error
	if err != nil {
		return false, fmt.Errorf("webhooks: fan out without endpoints: %w", err)
	}
	// A full batch: more rows are probably waiting.
	full := !out.Active && out.Marked == x.s.cfg.BatchSize
	x.backlog.Store(full)
	if full {
		x.Notify()
	}
	return out.Active, nil
}

func (x *Sender) fanout(ctx context.Context) (int, error) {
	created := 0
	err := x.s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		rows, err := outbox.ClaimFanout(ctx, tx, x.s.cfg.BatchSize)
		if err != nil || len(rows) == 0 {
			return err
		}
		now := x.s.now().UnixMilli()
		byCollection := map[int64][]Endpoint{}
		ids := make([]int64, 0, len(rows))
		for _, r := range rows {
			ids = append(ids, r.ID)
			ev, ok, err := outbox.TypedEventFromRow(r)
			if err != nil {
				// A detail that does not parse can never become an event;
				// it is skipped (and logged), not retried forever.
				x.log.Warn("webhooks: envelope has no typed event", "envelopeId", r.EnvelopeID, "error", err)
				continue
			}
			if !ok {
				continue
			}
			eps, seen := byCollection[r.CollectionID]
			if !seen {
				if err := tx.WithContext(ctx).Where("collection_id = ? AND state = ?", r.CollectionID, StateActive).
					Find(&eps).Error; err != nil {
					return fmt.Errorf("webhooks: endpoints of %d: %w", r.CollectionID, err)
				}
				byCollection[r.CollectionID] = eps
			}
			var body []byte
			for _, ep := range eps {
				if !ep.wants(ev.Type) {
					continue
				}
				if body == nil {
					if body, err = ev.MarshalJSON(); err != nil {
						return err
					}
				}
				m := message{
					EndpointID: ep.ID, EventID: ev.ID, EventType: ev.Type, Body: string(body),
					Status: messagePending, NextAttemptAt: now, CreatedAt: now,
				}
				res := tx.WithContext(ctx).Clauses(clause.OnConflict{DoNothing: true}).Create(&m)
				if res.Error != nil {
					return fmt.Errorf("webhooks: insert message: %w", res.Error)
				}
				created += int(res.RowsAffected)
			}
		}
		return outbox.MarkFannedOut(ctx, tx, ids, now)
	})
	return created, err
}

// claimed is a leased message and the endpoint it goes to.
type claimed struct {
	m  message
	ep Endpoint
}

func (x *Sender) deliver(ctx context.Context) (int, error) {
	now := x.s.now()
	var batch []claimed
	err := x.s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		sql := `SELECT m.* FROM webhook_messages m JOIN webhooks w ON w.id = m.endpoint_id
WHERE m.status = ? AND m.next_attempt_at <= ? AND w.state = ? ORDER BY m.id LIMIT ?`
		if store.IsPostgres(tx) {
			sql += ` FOR UPDATE OF m SKIP LOCKED`
		}
		var ms []message
		if err := tx.WithContext(ctx).Raw(sql, messagePending, now.UnixMilli(), StateActive, x.s.cfg.BatchSize).Scan(&ms).Error; err != nil {
			return fmt.Errorf("webhooks: claim messages: %w", err)
		}
		if len(ms) == 0 {
			return nil
		}
		ids := make([]int64, len(ms))
		epIDs := make([]int64, len(ms))
		for i, m := range ms {
			ids[i], epIDs[i] = m.ID, m.EndpointID
		}
		// The lease: another instance (or this one after a crash) takes the
		// message again only once the POST surely ended.
		lease := now.Add(2 * x.s.cfg.Timeout).UnixMilli()
		if err := tx.WithContext(ctx).Model(&message{}).Where("id IN ?", ids).Update("next_attempt_at", lease).Error; err != nil {
			return fmt.Errorf("webhooks: lease messages: %w", err)
		}
		var eps []Endpoint
		if err := tx.WithContext(ctx).Where("id IN ?", epIDs).Find(&eps).Error; err != nil {
			return fmt.Errorf("webhooks: endpoints: %w", err)
		}
		byID := map[int64]Endpoint{}
		for _, ep := range eps {
			byID[ep.ID] = ep
		}
		for _, m := range ms {
			batch = append(batch, claimed{m: m, ep: byID[m.EndpointID]})
		}
		return nil
	})
	if err != nil || len(batch) == 0 {
		return 0, err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(sendConcurrency)
	for _, c := range batch {
		g.Go(func() error {
			x.attempt(gctx, c)
			return nil
		})
	}
	_ = g.Wait()
	return len(batch), nil
}

// attempt POSTs one message and records the outcome.
func (x *Sender) attempt(ctx context.Context, c claimed) {
	start := x.s.now()
	var res webhookout.Result
	secrets, err := x.s.signingSecrets(c.ep, start)
	if err != nil {
		res.Err = err
	} else {
		res = x.s.client.Send(ctx, webhookout.Message{
			URL: c.ep.URL, ID: c.m.EventID, Timestamp: start, Body: []byte(c.m.Body), Secrets: secrets,
		})
	}
	errText := ""
	if !res.OK() {
		errText = fmt.Sprint(res.Err)
	}
	if err := x.record(ctx, c, start, res, errText); err != nil {
		x.log.Warn("webhooks: record attempt", "endpoint", c.ep.ID, "eventId", c.m.EventID, "error", err)
	}
}

func (x *Sender) record(ctx context.Context, c claimed, start time.Time, res webhookout.Result, errText string) error {
	now := x.s.now()
	disabled := false
	err := x.s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		x.s.logAttempt(ctx, tx, c.ep.ID, c.m.EventID, c.m.EventType, start, res, errText)
		set := map[string]any{"attempts": gorm.Expr("attempts + 1"), "last_error": errText}
		ep := tx.WithContext(ctx).Model(&Endpoint{}).Where("id = ?", c.ep.ID)
		if res.OK() {
			set["status"] = messageDelivered
			if err := ep.Where("failing_since <> 0").Update("failing_since", 0).Error; err != nil {
				return err
			}
		} else {
			if now.Sub(time.UnixMilli(c.m.CreatedAt)) >= x.s.cfg.RetryFor {
				set["status"] = messageFailed
			} else {
				set["next_attempt_at"] = now.Add(retryDelay(x.s.cfg.BackoffBase, x.s.cfg.BackoffMax, c.m.Attempts+1, res.RetryAfter)).UnixMilli()
			}
			if err := ep.Where("failing_since = 0").Update("failing_since", now.UnixMilli()).Error; err != nil {
				return err
			}
			var cur Endpoint
			if err := tx.WithContext(ctx).Take(&cur, c.ep.ID).Error; err != nil {
				return err
			}
			if cur.State == StateActive && cur.FailingSince > 0 && now.Sub(time.UnixMilli(cur.FailingSince)) >= x.s.cfg.DisableAfter {
				err := tx.WithContext(ctx).Model(&Endpoint{}).Where("id = ?", c.ep.ID).Updates(map[string]any{
					"state": StateDisabled, "updated_time": now.UnixMilli(), "version": gorm.Expr("version + 1"),
				}).Error
				if err != nil {
					return err
				}
				cur.State, cur.UpdatedTime = StateDisabled, now.UnixMilli()
				disabled = true
				if err := x.s.record(ctx, tx, system, outbox.WebhookUpdate, cur, map[string]any{"webhook": cur}); err != nil {
					return err
				}
			}
		}
		return tx.WithContext(ctx).Model(&message{}).Where("id = ?", c.m.ID).Updates(set).Error
	})
	if err == nil && disabled {
		x.s.subs.drop()
		x.s.outbox.Committed()
		x.log.Warn("webhooks: endpoint disabled after failing", "endpoint", c.ep.ID, "for", x.s.cfg.DisableAfter)
	}
	return err
}

// retryDelay is the wait before retry n (1-based): the project's one retry
// policy (internal/retry: exponential from base, capped at ceiling, equal
// jitter), or the endpoint's Retry-After when that is longer (capped at a day).
func retryDelay(base, ceiling time.Duration, n int, retryAfter time.Duration) time.Duration {
	return retry.Policy{Initial: base, Max: ceiling}.After(n, retryAfter)
}
