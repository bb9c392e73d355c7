package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/dispatch"
)

// recoverLoop runs Recover at start and every dispatch.lease/4, so a dead
// instance's deliveries are back in the queue about 1.25 leases after its
// last renewal at worst.
func (d *Dispatcher) recoverLoop(ctx context.Context) {
	every := min(max(d.cfg.Lease/4, 100*time.Millisecond), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if n, err := d.Recover(ctx); err != nil && ctx.Err() == nil {
			d.log.WarnContext(ctx, "dispatch: recovery of expired leases failed", "error", err)
		} else if n > 0 {
			d.Wake()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Recover applies the lease rule: a delivery in sending whose lease has
// expired belonged to an instance that died (or lost the database for
// longer than a lease) mid-send, or was left by a worker whose provider
// call lost its answer (leaveInDoubt); a live instance renews the leases of what
// it holds, so its sends never look expired. Its last attempt is in doubt.
// If its channel is a channels.Reconciler, the provider is asked: accepted,
// the delivery is sent; not accepted, it is sent again. If the provider
// cannot be asked (no lookup, or the lookup failed) the action's
// config.inDoubt decides: resend (the default) puts it back to pending, due
// now, to be sent again (at least once); markUnknown ends it unknown (at
// most once). An attempt that was the last (dispatch.maxAttempts) is not
// sent again: it fails with a reason that says so. Each resolution counts
// on the delivery (in_doubt, reconciled). A delivery is never left in
// sending and never dropped without a reason. Recover returns how many
// deliveries it moved, logs the count (the in-doubt deliveries of a crash)
// and reports it to OnInDoubt.
func (d *Dispatcher) Recover(ctx context.Context) (int64, error) {
	var total, found int64
	defer func() {
		if found > 0 {
			d.log.WarnContext(ctx, "dispatch: deliveries in doubt: found in sending with an expired lease (an instance stopped mid-send, or a provider's answer was lost)",
				"inDoubt", found, "moved", total)
			if d.OnInDoubt != nil {
				d.OnInDoubt(int(found))
			}
		}
	}()
	for {
		n, seen, err := d.recoverBatch(ctx, 1000)
		total += n
		found += int64(seen)
		if err != nil || seen < 1000 {
			return total, err
		}
	}
}

// staleSQL finds expired leases (now, limit) in the order of the partial
// index over sending rows, (lease_until, id), so the scan stops at limit
// and never sorts. Ordered by id instead, it was planned, on statistics
// taken while most rows were still sending, as a walk of the primary key
// filtering every row of the table: 18–68 ms at 100,000 deliveries, every
// lease/4, growing with the table (docs/benchmarks.md). A scan of the lease
// index also marks the entries of rows that have left sending as dead, so
// the next sweep skips them.
const staleSQL = `SELECT id, notification_id, collection_id, action_id, channel, recipient, attempts, address, claimed_at, lease_owner, lease_until, digest_delivery_id FROM deliveries
WHERE status = 'sending' AND lease_until < ? ORDER BY lease_until, id LIMIT ?`

// recoverBatch moves up to limit deliveries whose lease expired. It returns
// how many it moved and how many it found (in doubt): a row whose owner
// renewed it (or recorded it) between the SELECT and the write is found but
// not moved.
func (d *Dispatcher) recoverBatch(ctx context.Context, limit int) (int64, int, error) {
	now := d.now()
	// Each row comes with what the channels may need to be asked about it:
	// its recipient address, when it was claimed and by whom, and its
	// lease expiry.
	var stale []Claimed
	if err := d.db.WithContext(ctx).Raw(staleSQL, now.UnixMilli(), limit).Scan(&stale).Error; err != nil {
		return 0, 0, fmt.Errorf("dispatch: recover: %w", err)
	}
	// This instance's own expired leases on deliveries it still holds are
	// not its to recover (its renewals failed, or a clock jumped): it will
	// record them. Other instances may take them.
	stale = slices.DeleteFunc(stale, func(c Claimed) bool { return c.LeaseOwner == d.owner && d.held.has(c.ID) })
	if len(stale) == 0 {
		return 0, 0, nil
	}
	acts, err := d.loadActions(ctx, stale)
	if err != nil {
		return 0, 0, err
	}
	res := d.reconcile(ctx, stale, acts, now)
	outs := make([]outcome, len(stale))
	for i, c := range stale {
		o := outcome{id: c.ID, collectionID: c.CollectionID, attempts: c.Attempts}
		pm, accepted := res.accepted[c.ID]
		policy := actions.InDoubtResend
		if a := acts[c.ActionID]; a != nil && a.Config.InDoubt != "" {
			policy = a.Config.InDoubt
		}
		switch {
		case accepted:
			o.status, o.provider, o.providerMessageID, o.sentTime = dispatch.StatusSent, res.provider[c.Channel], pm, now.UnixMilli()
			o.reconciled = dispatch.ReconciledAccepted
			o.reason = "the worker stopped while sending or lost the provider's answer; the provider had accepted it"
		case res.asked[c.Channel] && c.Attempts >= d.cfg.MaxAttempts:
			o.status, o.reconciled = dispatch.StatusFailed, dispatch.ReconciledNotFound
			o.reason = fmt.Sprintf("gave up after %d attempts: the last attempt's answer was lost (the worker stopped while sending, or its call broke) and the provider had not accepted it", c.Attempts)
		case res.asked[c.Channel]:
			o.status, o.nextAttemptAt, o.reconciled = dispatch.StatusPending, now.UnixMilli(), dispatch.ReconciledNotFound
			o.reason = "the worker stopped while sending or lost the provider's answer; the provider had not accepted it, sending again"
		case policy == actions.InDoubtMarkUnknown:
			o.status, o.reconciled = dispatch.StatusUnknown, dispatch.ReconciledUnknown
			o.reason = "outcome unknown: the worker stopped while sending or lost the provider's answer, and " + res.why(c.Channel) + "; not sent again (config.inDoubt is markUnknown)"
		case c.Attempts >= d.cfg.MaxAttempts:
			o.status, o.reconciled = dispatch.StatusFailed, dispatch.ReconciledUnknown
			o.reason = "outcome of the last attempt unknown: the worker stopped while sending or lost the provider's answer, and dispatch.maxAttempts is reached"
		default:
			o.status, o.nextAttemptAt, o.reconciled = dispatch.StatusPending, now.UnixMilli(), dispatch.ReconciledResent
			o.reason = "the worker stopped while sending or lost the provider's answer, and " + res.why(c.Channel) + "; attempt outcome unknown, sending again"
		}
		outs[i] = o
	}
	n, err := d.recordRecovered(ctx, now.UnixMilli(), stale, outs)
	if err != nil {
		return 0, 0, err
	}
	return n, len(stale), nil
}

// recordRecovered writes Recover's outcomes for stale, fenced as each row
// was found: still the same owner's, same attempt, and its lease still
// expired at now (a live owner that renewed in between keeps it).
func (d *Dispatcher) recordRecovered(ctx context.Context, now int64, stale []Claimed, outs []outcome) (int64, error) {
	found := make(map[int64]Claimed, len(stale))
	for _, c := range stale {
		found[c.ID] = c
	}
	for i := range outs {
		c := found[outs[i].id]
		outs[i].owner, outs[i].leaseBefore = c.LeaseOwner, now
	}
	return d.recordCount(ctx, outs)
}

// reconciled is what the channels answered about in-doubt deliveries.
type reconciled struct {
	accepted map[int64]string // delivery id → provider message id
	asked    map[string]bool  // channels whose provider answered
	provider map[string]string
	errs     map[string]error // channels whose provider could not be asked, and why
}

func (r reconciled) why(channel string) string {
	if err := r.errs[channel]; err != nil && !errors.Is(err, channels.ErrCannotReconcile) {
		return "the provider could not be asked whether it accepted it (" + apperr.Truncate(err.Error(), 300) + ")"
	}
	return "the provider cannot be asked whether it accepted it"
}

// reconcile asks each channel that is a channels.Reconciler which of its
// stale deliveries it accepted, within dispatch.sendTimeout.
func (d *Dispatcher) reconcile(ctx context.Context, stale []Claimed, acts map[int64]*actions.Action, now time.Time) reconciled {
	res := reconciled{accepted: map[int64]string{}, asked: map[string]bool{}, provider: map[string]string{}, errs: map[string]error{}}
	byChannel := map[string][]channels.InDoubt{}
	for _, c := range stale {
		byChannel[c.Channel] = append(byChannel[c.Channel], d.inDoubt(c, acts[c.ActionID], now))
	}
	for name, list := range byChannel {
		rec, ok := d.channels[name].(channels.Reconciler)
		if !ok {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, d.cfg.SendTimeout)
		got, err := rec.Accepted(actx, list)
		cancel()
		if err != nil {
			res.errs[name] = err
			if !errors.Is(err, channels.ErrCannotReconcile) {
				d.log.WarnContext(ctx, "dispatch: cannot ask the provider what it accepted; applying each action's inDoubt policy", "channel", name, "error", err)
			}
			continue
		}
		res.asked[name], res.provider[name] = true, d.channels[name].Name()
		for id, pm := range got {
			res.accepted[id] = pm
		}
	}
	return res
}

// inDoubt describes stale delivery c for its provider's lookup: where it
// went and from whom, as it would be rendered now (a is nil when its action
// is gone; then only the address is known), and when.
func (d *Dispatcher) inDoubt(c Claimed, a *actions.Action, now time.Time) channels.InDoubt {
	q := channels.InDoubt{DeliveryID: c.ID, NotificationID: c.NotificationID, Since: time.UnixMilli(c.ClaimedAt), Until: now}
	var rc dispatch.Recipient
	if json.Unmarshal([]byte(c.Recipient), &rc) != nil {
		return q
	}
	switch c.Channel {
	case actions.ChannelEmail:
		if to := rc.To(); len(to) > 0 {
			q.Address = to[0].Email
		}
	case actions.ChannelSMS:
		q.Address = rc.Phone
	case actions.ChannelPush:
		q.Address = rc.PushID
	}
	if a == nil {
		return q
	}
	m, err := d.render(a, rc.ForRender())
	if err != nil {
		return q
	}
	switch c.Channel {
	case actions.ChannelEmail:
		q.Sender, q.Body = m.From.Email, m.Subject
	case actions.ChannelSMS:
		q.Sender, q.Body = m.SMSFrom, m.Body
		if m.MessagingServiceSID != "" {
			q.Sender = m.MessagingServiceSID
		}
	case actions.ChannelPush:
		q.Body = m.Body
	}
	return q
}
