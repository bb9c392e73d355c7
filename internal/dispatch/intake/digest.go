package intake

import (
	"context"
	"fmt"
	"strconv"

	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/dispatch"
)

// joinDigestSQL opens or joins the digest window of one key for one
// delivery (parameters: collection, action, key, the delivery's id, its
// base time, the window's close, max items), as one statement so that
// instances sharing the database agree on one window per key: the row's
// primary key serialises them, and the loser of a race for a new key joins
// the winner's window. The window is open while it has not closed and is
// not full; otherwise the statement replaces it with a new one, opened by
// this delivery. It returns the window's delivery and its item count.
//
// Every SET expression reads the row as it was (both dialects), so the
// open test is the same in each.
const joinDigestSQL = `
INSERT INTO digest_windows (collection_id, action_id, recipient_key, delivery_id, opened_at, closes_at, item_count, max_items)
VALUES (?, ?, ?, ?, ?, ?, 1, ?)
ON CONFLICT (collection_id, action_id, recipient_key) DO UPDATE SET
  delivery_id = CASE WHEN ` + digestOpen + ` THEN digest_windows.delivery_id ELSE excluded.delivery_id END,
  opened_at   = CASE WHEN ` + digestOpen + ` THEN digest_windows.opened_at ELSE excluded.opened_at END,
  closes_at   = CASE WHEN ` + digestOpen + ` THEN digest_windows.closes_at ELSE excluded.closes_at END,
  max_items   = CASE WHEN ` + digestOpen + ` THEN digest_windows.max_items ELSE excluded.max_items END,
  item_count  = CASE WHEN ` + digestOpen + ` THEN digest_windows.item_count + 1 ELSE 1 END
RETURNING delivery_id, item_count, max_items`

const digestOpen = `(digest_windows.closes_at > excluded.opened_at AND digest_windows.item_count < digest_windows.max_items)`

// joinDigests is the store step of config.digest (docs/rules.md, Digest):
// planning left each delivery of a digest action scheduled with reason
// digest, due at the close of a window it would open; here, in the
// intake's transaction and after the deliveries are inserted (the window
// names its delivery), each either opens its key's window, and stays as
// planned, or joins the open one and becomes digested, linked to the
// window's delivery. The join that fills a window makes the window's
// delivery due now.
func (in *Intake) joinDigests(ctx context.Context, tx *gorm.DB, b *batch, ds []*dispatch.Delivery) error {
	var digests map[int64]*actions.Digest
	for _, d := range ds {
		if d.Status != dispatch.StatusScheduled || d.Reason != dispatch.ReasonDigest {
			continue
		}
		if digests == nil {
			digests = b.digests()
		}
		dg := digests[d.ActionID]
		if dg == nil {
			continue // planning only marks digest actions
		}
		opened := d.NextAttemptAt - dg.Every().Milliseconds()
		var w struct {
			DeliveryID int64
			ItemCount  int
			MaxItems   int
		}
		if err := tx.WithContext(ctx).Raw(joinDigestSQL, d.CollectionID, d.ActionID, DigestKey(d), d.ID, opened, d.NextAttemptAt, dg.MaxItems).
			Scan(&w).Error; err != nil {
			return fmt.Errorf("digest: join window: %w", err)
		}
		// Every delivery of the window links to its delivery, that one to
		// itself: the worker reads the items by the link, and the opener's
		// link is how it knows to.
		d.DigestDeliveryID = w.DeliveryID
		if w.DeliveryID != d.ID {
			d.Status = dispatch.StatusDigested
			d.ReasonDetail = "joined the digest of delivery " + strconv.FormatInt(w.DeliveryID, 10)
		}
		if err := tx.WithContext(ctx).Exec(`UPDATE deliveries SET status = ?, digest_delivery_id = ?, reason_detail = ? WHERE id = ?`,
			d.Status, d.DigestDeliveryID, d.ReasonDetail, d.ID).Error; err != nil {
			return fmt.Errorf("digest: join window: %w", err)
		}
		if w.ItemCount >= w.MaxItems {
			// Full: the window's delivery is due now. The next delivery
			// for the key opens a new window (the statement sees it full).
			if err := tx.WithContext(ctx).Exec(`UPDATE deliveries SET next_attempt_at = ?, updated_time = ? WHERE id = ? AND status = ?`,
				b.now, b.now, w.DeliveryID, dispatch.StatusScheduled).Error; err != nil {
				return fmt.Errorf("digest: close full window: %w", err)
			}
			if w.DeliveryID == d.ID {
				d.NextAttemptAt = b.now
			}
		}
	}
	return nil
}

// DigestKey is the recipient key of d's digest window: the recipient's id,
// or, for a recipient without one, the channel's address.
func DigestKey(d *dispatch.Delivery) string {
	if d.Recipient.ID != "" {
		return "id:" + d.Recipient.ID
	}
	return "address:" + d.Channel + ":" + d.Address
}

// digests is the config.digest of every action b's rules resolved, by id.
func (b *batch) digests() map[int64]*actions.Digest {
	out := map[int64]*actions.Digest{}
	for _, r := range b.rules {
		for i := range r.Rule.Actions {
			if dg := r.Rule.Actions[i].Config.Digest; dg != nil {
				out[r.Rule.Actions[i].ID] = dg
			}
		}
	}
	return out
}
