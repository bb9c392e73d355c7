package delivery

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/channels"
)

// pruneBatch is how many notifications one prune transaction deletes, so a
// large backlog is removed in short transactions that never hold many locks.
const pruneBatch = 500

// pruneEvery is how often Run prunes when dispatch.retention is set.
const pruneEvery = time.Hour

// Pruned counts what one Prune deleted.
type Pruned struct {
	Notifications, Deliveries, SandboxMessages int64
	// ThrottleCounters are the throttle windows that had ended.
	ThrottleCounters int64
}

// Prune applies dispatch.retention: it deletes the notifications accepted
// more than retention ago whose deliveries are all finished (none pending,
// scheduled or sending), with their deliveries and the sandbox's records of them. A
// notification with a delivery still to send is kept whatever its age; a
// finished delivery never becomes pending again, so one selected here stays
// prunable. The notifications of one keyed request are its dedupe record
// (dispatch/intake) and go together: none while any of them has a delivery to
// send, so a redelivery never finds part of a request. A message
// redelivered after its notifications are gone is accepted as new, which is
// why retention is at least a day.
func (d *Dispatcher) Prune(ctx context.Context) (Pruned, error) {
	var total Pruned
	if d.cfg.Retention <= 0 {
		return total, nil
	}
	// A throttle window that has ended counts nothing any more (gate.go).
	res := d.db.WithContext(ctx).Exec(`DELETE FROM throttle_counters WHERE expires_at <= ?`, d.now().UnixMilli())
	if res.Error != nil {
		return total, fmt.Errorf("dispatch: prune throttle counters: %w", res.Error)
	}
	total.ThrottleCounters = res.RowsAffected
	cutoff := d.now().Add(-d.cfg.Retention).UnixMilli()
	for {
		// Oldest first by id: ids grow with time, so the scan meets the
		// prunable rows first.
		var ids []int64
		if err := d.db.WithContext(ctx).Raw(`SELECT id FROM notifications n
WHERE n.created_time < ? AND NOT EXISTS (
  SELECT 1 FROM deliveries d WHERE d.notification_id = n.id AND d.status IN ('pending', 'scheduled', 'sending'))
AND (n.idempotency_key = '' OR NOT EXISTS (
  SELECT 1 FROM notifications k JOIN deliveries d ON d.notification_id = k.id
  WHERE k.idempotency_key <> '' AND k.intake_scope = n.intake_scope AND k.idempotency_key = n.idempotency_key
  AND k.id <> n.id AND d.status IN ('pending', 'scheduled', 'sending')))
ORDER BY id LIMIT ?`, cutoff, pruneBatch).Find(&ids).Error; err != nil {
			return total, fmt.Errorf("dispatch: prune: %w", err)
		}
		if len(ids) == 0 {
			break
		}
		// The sandbox's records of these deliveries go first, outside the
		// transaction (the sandbox owns its table): if the deletes below
		// then fail, the notifications stay prunable and the next run
		// finishes them; never a record left behind without its delivery.
		// Only the sandbox's deliveries can have records, and those whose
		// outcome recovery worked out (an attempt may have been the
		// sandbox's before another provider sent it), so a service on real
		// providers asks nothing of it.
		var deliveries []int64
		if err := d.db.WithContext(ctx).Raw(`SELECT id FROM deliveries WHERE notification_id IN ? AND (provider = ? OR in_doubt > 0)`,
			ids, sandboxProvider).Find(&deliveries).Error; err != nil {
			return total, fmt.Errorf("dispatch: prune: %w", err)
		}
		n, err := d.sandboxRecords().Delete(ctx, deliveries)
		total.SandboxMessages += n
		if err != nil {
			return total, fmt.Errorf("dispatch: prune: %w", err)
		}
		err = d.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			res := tx.Exec(`DELETE FROM deliveries WHERE notification_id IN ?`, ids)
			if res.Error != nil {
				return res.Error
			}
			total.Deliveries += res.RowsAffected
			if res = tx.Exec(`DELETE FROM notifications WHERE id IN ?`, ids); res.Error != nil {
				return res.Error
			}
			total.Notifications += res.RowsAffected
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("dispatch: prune: %w", err)
		}
		if len(ids) < pruneBatch {
			break
		}
	}
	return total, nil
}

// sandboxProvider is channels.SandboxName: the provider of deliveries whose
// sent messages are in sandbox_messages.
const sandboxProvider = channels.SandboxName

// SandboxRecords is the sandbox channel's record of what it accepted
// (channels.SandboxRecords, the one owner of sandbox_messages): Prune
// deletes a delivery's records with it.
type SandboxRecords interface {
	// Delete removes the records of deliveryIDs and says how many it removed.
	Delete(ctx context.Context, deliveryIDs []int64) (int64, error)
}

// WithSandbox makes Prune delete the sandbox's records through r (the app
// passes the records the sandbox channel writes) and returns d. Without it
// they are deleted from the dispatcher's database. Call it before Run.
func (d *Dispatcher) WithSandbox(r SandboxRecords) *Dispatcher {
	d.sandbox = r
	return d
}

func (d *Dispatcher) sandboxRecords() SandboxRecords {
	if d.sandbox == nil {
		return channels.NewSandboxRecords(d.db)
	}
	return d.sandbox
}

func (d *Dispatcher) pruneLoop(ctx context.Context) {
	if d.cfg.Retention <= 0 {
		return
	}
	t := time.NewTicker(pruneEvery)
	defer t.Stop()
	for {
		switch n, err := d.Prune(ctx); {
		case err != nil && ctx.Err() == nil:
			d.log.WarnContext(ctx, "dispatch: retention prune failed; retrying at the next run", "error", err)
		case n.Notifications > 0:
			d.log.InfoContext(ctx, "dispatch: pruned past dispatch.retention", "notifications", n.Notifications,
				"deliveries", n.Deliveries, "sandboxMessages", n.SandboxMessages, "retention", d.cfg.Retention)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
