package intake

import (
	"context"
	"time"

	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/outbox"
)

// Events is dispatch.Events: what planning's skips and queue sends
// (NOTIFICATION_ACCEPTED; an API send has its notifications/send envelope,
// which the webhooks fan out instead) are recorded through.
type Events = dispatch.Events

// WithEvents makes the intake record lifecycle events through ev.
func WithEvents(ev Events) Option { return func(in *Intake) { in.events = ev } }

// recordEvents records, in tx, the wanted events of b's fresh notes and
// their skipped deliveries, and says whether it recorded any. A batch of
// collections without endpoints costs a map lookup per queue notification
// and per skipped delivery.
func (in *Intake) recordEvents(ctx context.Context, tx *gorm.DB, b *batch) (bool, error) {
	if in.events == nil {
		return false, nil
	}
	at := time.UnixMilli(b.now)
	var evs []outbox.TypedEvent
	for _, p := range b.notes {
		n := p.note
		if b.subs[p.sub].Actor == nil && n.Status == dispatch.NotificationAccepted &&
			in.events.Wants(ctx, tx, n.CollectionID, outbox.TypeNotificationAccepted) {
			ev, err := outbox.NotificationAcceptedEvent(n.CollectionID, outbox.AcceptedNotification{
				ID: n.ID, Name: n.Name, Source: n.Source, Recipients: n.Recipients}, at)
			if err != nil {
				return false, err
			}
			evs = append(evs, ev)
		}
		for _, d := range p.deliveries {
			if d.Status != dispatch.StatusSkipped || !in.events.Wants(ctx, tx, d.CollectionID, outbox.TypeDeliverySkipped) {
				continue
			}
			ev, err := outbox.DeliveryEvent(outbox.TypeDeliverySkipped, outbox.DeliveryChange{
				ID: d.ID, NotificationID: d.NotificationID, CollectionID: d.CollectionID, ActionID: d.ActionID,
				Channel: d.Channel, Address: d.Address, Status: d.Status, Reason: d.Reason, ReasonDetail: d.ReasonDetail,
			}, at, "")
			if err != nil {
				return false, err
			}
			evs = append(evs, ev)
		}
	}
	if len(evs) == 0 {
		return false, nil
	}
	return true, in.events.Record(ctx, tx, evs)
}
