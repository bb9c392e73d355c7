package status

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/outbox"
)

// EnvelopeRecorder records an outbox envelope in the caller's transaction
// (outbox.Writer).
type EnvelopeRecorder interface {
	Record(ctx context.Context, tx *gorm.DB, c outbox.Change) error
	Committed()
}

// WithEnvelopes makes Cancel record its notifications/cancel envelope
// through r and returns s. Without it a cancel records none.
func (s *Store) WithEnvelopes(r EnvelopeRecorder) *Store {
	s.outbox = r
	return s
}

// Cancellation is what one Cancel did: the notifications/cancel envelope's
// payload and the cancel route's counts.
type Cancellation struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
	// Canceled is how many deliveries this call canceled (scheduled or
	// pending ones); 0 when an earlier cancel, or the sends, came first.
	Canceled int64 `json:"canceled"`
	// InFlight is how many were being sent when it ran (sending): the
	// provider call was already under way, so they end as it says (sent,
	// or failed or pending again for a retry, which a second cancel takes).
	InFlight int64 `json:"inFlight"`
}

// Cancel cancels what has not been sent of notification id of
// collectionID: its scheduled and pending deliveries become canceled, in
// one statement fenced on those statuses, so a delivery a worker claimed
// (sending) meanwhile is left to its send and never marked canceled. It is
// idempotent: a second call cancels nothing and records no envelope. The
// notification is returned as Get shows it after the cancel. An unknown
// notification is NOT_FOUND.
func (s *Store) Cancel(ctx context.Context, collectionID, id int64, actor auth.Principal) (*dispatch.NotificationRecord, Cancellation, error) {
	c := Cancellation{ID: id}
	now := s.now().UnixMilli()
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var names []string
		if err := tx.Model(&dispatch.NotificationRecord{}).Where("collection_id = ? AND id = ?", collectionID, id).Pluck("name", &names).Error; err != nil {
			return err
		}
		if len(names) == 0 {
			return &apperr.Error{Kind: apperr.NotFound, Err: ErrNotFound,
				Message: fmt.Sprintf("notification %d does not exist in collection %d", id, collectionID)}
		}
		c.Name = names[0]
		res := tx.Exec(`UPDATE deliveries SET status = ?, reason = ?, reason_detail = '', updated_time = ?
WHERE notification_id = ? AND status IN ('scheduled', 'pending')`,
			dispatch.StatusCanceled, "canceled by user "+apperr.Truncate(actor.UserID, 100)+" before it was sent", now, id)
		if res.Error != nil {
			return res.Error
		}
		c.Canceled = res.RowsAffected
		// A canceled digest delivery's window takes no more items: the
		// next delivery for its key opens a new one (docs/rules.md, Digest).
		if err := tx.Exec(`DELETE FROM digest_windows WHERE delivery_id IN
  (SELECT id FROM deliveries WHERE notification_id = ? AND status = ?)`, id, dispatch.StatusCanceled).Error; err != nil {
			return err
		}
		if err := tx.Model(&dispatch.Delivery{}).Where("notification_id = ? AND status = ?", id, dispatch.StatusSending).Count(&c.InFlight).Error; err != nil {
			return err
		}
		if c.Canceled == 0 || s.outbox == nil {
			return nil
		}
		return s.outbox.Record(ctx, tx, outbox.Change{
			DetailType: outbox.NotificationsCancel, EntityID: strconv.FormatInt(id, 10), CollectionID: collectionID,
			Payload: map[string]any{"notification": c}, Actor: actor,
			Href: fmt.Sprintf("/v1/collections/%d/notifications/%d", collectionID, id),
		})
	})
	if err != nil {
		if ae := (*apperr.Error)(nil); errors.As(err, &ae) {
			return nil, c, err
		}
		return nil, c, fmt.Errorf("dispatch: cancel notification %d: %w", id, err)
	}
	if c.Canceled > 0 && s.outbox != nil {
		s.outbox.Committed()
	}
	n, err := s.Get(ctx, collectionID, id)
	return n, c, err
}
