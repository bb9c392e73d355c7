package dispatch

import (
	"context"
	"database/sql"

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
	// eventType. It answers from memory: it is asked for every change. When
	// the answer needs the endpoints read again it reads them through db,
	// the caller's: inside the transaction of a change that is the
	// transaction, whose connection the caller holds already (a read
	// waiting for a connection of its own, while every connection was held
	// by a caller waiting on it, hung them all).
	Wants(ctx context.Context, db *gorm.DB, collectionID int64, eventType string) bool
	// Record writes evs in tx, the transaction of their changes.
	Record(ctx context.Context, tx *gorm.DB, evs []outbox.TypedEvent) error
	// Committed is called after a transaction that recorded events commits.
	Committed()
}

// ChangedDelivery is a delivery as a status change left it: what its
// lifecycle event reports. The workers' record statement and the provider
// reports both read it back (ChangedColumns) from the rows they change.
type ChangedDelivery struct {
	ID                int64
	NotificationID    int64
	CollectionID      int64
	ActionID          int64
	Channel           string
	Address           string
	Status            string
	Reason            string
	ReasonDetail      string
	Provider          string
	ProviderMessageID sql.NullString
}

// ChangedColumns are ChangedDelivery's columns, qualified by deliveries.
const ChangedColumns = "deliveries.id, deliveries.notification_id, deliveries.collection_id, deliveries.action_id, " +
	"deliveries.channel, deliveries.address, deliveries.status, deliveries.reason, deliveries.reason_detail, deliveries.provider, " +
	"deliveries.provider_message_id"

// Change is c as its lifecycle event's payload.
func (c ChangedDelivery) Change() outbox.DeliveryChange {
	return outbox.DeliveryChange{
		ID: c.ID, NotificationID: c.NotificationID, CollectionID: c.CollectionID, ActionID: c.ActionID,
		Channel: c.Channel, Address: c.Address, Status: c.Status, Reason: c.Reason, ReasonDetail: c.ReasonDetail,
		Provider: c.Provider, ProviderMessageID: c.ProviderMessageID.String,
	}
}
