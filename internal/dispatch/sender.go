package dispatch

import (
	"context"
	"fmt"

	"github.com/notificationservice/notificationservice/internal/actions"
)

// senderRow is an action with its collection's default email sender, as
// the one join in loadActions reads them.
type senderRow struct {
	actions.Action
	CollectionFromEmail string
	CollectionFromName  string
}

// loadActions reads the actions ids, each with its collection's default
// sender, in one query per batch: a join, so the default costs neither a
// query per delivery nor a second query per batch. An action whose config
// names no fromEmail gets its collection's default in its place, so render,
// which falls back to the service's sender last, sends from action config →
// collection default → channels.sendgrid. The sender is taken as a pair: an
// action's fromName never goes with the collection's address. The actions
// returned are this batch's copies; nothing is written back.
func (d *Dispatcher) loadActions(ctx context.Context, ids []int64) ([]actions.Action, error) {
	var rows []senderRow
	// LEFT JOIN and COALESCE: the sender never decides which actions load
	// (the foreign key keeps the collection there anyway).
	err := d.db.WithContext(ctx).Table("actions").
		Select("actions.*, COALESCE(collections.default_from_email, '') AS collection_from_email, "+
			"COALESCE(collections.default_from_name, '') AS collection_from_name").
		Joins("LEFT JOIN collections ON collections.id = actions.collection_id").
		Where("actions.id IN ?", ids).
		Find(&rows).Error // Find, not Scan: see claim
	if err != nil {
		return nil, fmt.Errorf("dispatch: load actions: %w", err)
	}
	acts := make([]actions.Action, len(rows))
	for i, r := range rows {
		acts[i] = r.Action
		if acts[i].Config.FromEmail == "" && r.CollectionFromEmail != "" {
			acts[i].Config.FromEmail, acts[i].Config.FromName = r.CollectionFromEmail, r.CollectionFromName
		}
	}
	return acts, nil
}
