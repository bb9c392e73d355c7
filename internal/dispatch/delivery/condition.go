package delivery

import (
	"context"
	"fmt"
	"time"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/condition"
	"github.com/notificationservice/notificationservice/internal/dispatch"
)

// sendNote is what a send-time condition reads of a delivery's
// notification: the stored row's part of the environment, with the names
// of its collection and event.
type sendNote struct {
	ID             int64
	Name           string
	Source         string
	Tenant         string
	EntityID       string
	Correlation    dispatch.StringMap
	Data           dispatch.Data
	CollectionID   int64
	CollectionName string
	EventID        int64
	EventName      string
}

// loadNotes reads, in one query, the notifications of the deliveries of
// batch whose action evaluates its condition at send time
// (config.conditionEvaluateAt send), and gives each such delivery its
// note. A batch without one costs nothing.
func (d *Dispatcher) loadNotes(ctx context.Context, batch []Claimed, byID map[int64]*actions.Action) error {
	seen := map[int64]bool{}
	var ids []int64
	for _, c := range batch {
		if a := byID[c.ActionID]; a != nil && a.Config.ConditionAtSend() && !seen[c.NotificationID] {
			seen[c.NotificationID] = true
			ids = append(ids, c.NotificationID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	var rows []sendNote
	// LEFT JOINs: a collection or event deleted since planning leaves its
	// name empty rather than hiding the notification.
	err := d.db.WithContext(ctx).Table("notifications n").
		Select("n.id, n.name, n.source, n.tenant, n.entity_id, n.correlation, n.data, n.collection_id, "+
			"COALESCE(c.name, '') AS collection_name, n.event_id, COALESCE(e.name, '') AS event_name").
		Joins("LEFT JOIN collections c ON c.id = n.collection_id").
		Joins("LEFT JOIN events e ON e.id = n.event_id").
		Where("n.id IN ?", ids).
		Find(&rows).Error
	if err != nil {
		return fmt.Errorf("dispatch: notifications for send-time conditions: %w", err)
	}
	notes := make(map[int64]*sendNote, len(rows))
	for i := range rows {
		notes[rows[i].ID] = &rows[i]
	}
	for i := range batch {
		if seen[batch[i].NotificationID] {
			batch[i].note = notes[batch[i].NotificationID]
		}
	}
	return nil
}

// conditionGate evaluates the condition of an action whose
// config.conditionEvaluateAt is send (planning left it alone) just before
// the send, against the environment planning would have built, rebuilt
// from what is stored: the notification (loadNotes), the delivery's
// recipient, and now, the send time. So a delayed action can be "remind
// after 24 h unless notification.data.paid", or hold off by the hour of
// the send. False skips the delivery (condition_false); an error skips it
// (condition_error). It is evaluated at every attempt: a retry is a send
// too. The skip costs no attempt.
type conditionGate struct{}

func (conditionGate) hold(_ context.Context, c *Claimed, a *actions.Action, now time.Time) (verdict, bool) {
	if !a.Config.ConditionAtSend() {
		return verdict{}, false
	}
	skip := func(reason, detail string) (verdict, bool) {
		return verdict{status: dispatch.StatusSkipped, reason: reason, detail: detail, uncount: true}, true
	}
	cc := a.CompiledCondition()
	if cc.Err != nil {
		return skip(dispatch.ReasonConditionError, fmt.Sprintf("the action's condition does not compile (at send): %v", cc.Err))
	}
	if c.note == nil {
		return skip(dispatch.ReasonConditionError, fmt.Sprintf("the action's condition %s could not be evaluated at send: notification %d is gone", cc.Program, c.NotificationID))
	}
	rc, err := c.recipient()
	if err != nil {
		return verdict{}, false // sendGroup fails it, naming the error
	}
	n := c.note
	ok, err := cc.Program.Eval(condition.Env{
		Recipient: rc.ForCondition(),
		Notification: condition.Notification{Name: n.Name, Source: n.Source, Correlation: n.Correlation,
			Tenant: n.Tenant, EntityID: n.EntityID, Data: n.Data},
		Collection: condition.Ref{ID: n.CollectionID, Name: n.CollectionName},
		Event:      condition.Ref{ID: n.EventID, Name: n.EventName},
		Now:        now.UTC(),
	})
	if err != nil {
		return skip(dispatch.ReasonConditionError, fmt.Sprintf("the action's condition %s failed at send: %v", cc.Program, err))
	}
	if !ok {
		return skip(dispatch.ReasonConditionFalse, fmt.Sprintf("the action's condition is false at send: %s", cc.Program))
	}
	return verdict{}, false
}
