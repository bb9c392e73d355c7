package dispatch

import (
	"context"

	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/outbox"
)

// Events records the lifecycle events of the customer webhooks
// (NOTIFICATION_ACCEPTED, DELIVERY_*; docs/webhooks.md) in the transaction
// of the change they report. The intake (planning's skips, queue sends),
// the workers (their outcomes) and the status reports (the providers')
// write them alike, so the one interface is declared here, in the
// vocabulary all three share; webhooks.Sender implements it, and app wires
// it.
type Events interface {
	// Wants reports whether collectionID has an ACTIVE endpoint that wants
	// eventType. It answers from memory: it is asked for every change.
	Wants(ctx context.Context, collectionID int64, eventType string) bool
	// Record writes evs in tx, the transaction of their changes.
	Record(ctx context.Context, tx *gorm.DB, evs []outbox.TypedEvent) error
	// Committed is called after a transaction that recorded events commits.
	Committed()
}
