package dispatch

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"sort"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/store"
)

// Resolver finds the actions a notification name fires (actions.Rules).
type Resolver interface {
	Resolve(ctx context.Context, collectionID int64, name string) (actions.Rule, bool, error)
}

// EnvelopeRecorder records an outbox envelope in the caller's transaction
// (outbox.Writer).
type EnvelopeRecorder interface {
	Record(ctx context.Context, tx *gorm.DB, c outbox.Change) error
	Committed()
}

// Submission is one request to accept: a queue message or an API call.
type Submission struct {
	Source string // SourceQueue or SourceAPI
	// Key is the dedupe key: the AMQP message id or idempotency-key header,
	// or the API's Idempotency-Key. Empty means no dedupe.
	Key         string
	Request     Request
	Correlation map[string]string
	// TraceParent is the W3C traceparent of the message (the queue consumer
	// sets it per message); empty: the span in Submit's ctx, if any.
	TraceParent string
	// Actor is the API caller; when set, each accepted notification records
	// a notificationservice/notifications/send envelope.
	Actor *auth.Principal
}

func (s Submission) scope() string {
	if s.Source == SourceAPI {
		return "api:" + strconv.FormatInt(int64(s.Request.CollectionID), 10)
	}
	return SourceQueue
}

// Summary is what a caller learns about one accepted notification.
type Summary struct {
	ID         int64  `json:"id"`
	Name       string `json:"name"`
	Status     string `json:"status"`
	Reason     string `json:"reason,omitempty"`
	Deliveries int    `json:"deliveries"`
	Skipped    int    `json:"skipped"`
}

// Outcome is the result of one Submission.
type Outcome struct {
	Notifications []Summary
	// Replayed is true when the key was seen before with the same request:
	// nothing new was created and Notifications are the first result.
	Replayed bool
	// Conflict is true when the key was seen before with a different
	// request: nothing was created.
	Conflict bool
}

// Intake accepts submissions: it dedupes them by key, resolves each
// notification to its actions, plans deliveries and commits a whole batch
// in one transaction.
type Intake struct {
	db     *gorm.DB
	pg     bool
	rules  Resolver
	outbox EnvelopeRecorder
	now    func() time.Time
	local  Local
}

// NewIntake returns an Intake. outbox may be nil (no envelopes). local,
// when not nil, is this instance's Dispatcher: it takes the deliveries it
// has room for straight from each commit and is woken for the rest.
func NewIntake(db *gorm.DB, rules Resolver, ob EnvelopeRecorder, now func() time.Time, local Local) *Intake {
	if now == nil {
		now = time.Now
	}
	return &Intake{db: db, pg: store.IsPostgres(db), rules: rules, outbox: ob, now: now, local: local}
}

type ruleKey struct {
	collectionID int64
	name         string
}

type resolved struct {
	rule  actions.Rule
	found bool
}

// Submit accepts subs in one transaction and returns one Outcome per
// submission, in order. An error means nothing was committed (the caller
// may retry the whole batch: keys make that safe).
func (in *Intake) Submit(ctx context.Context, subs []Submission) ([]Outcome, error) {
	rules := map[ruleKey]resolved{}
	for _, s := range subs {
		for _, n := range s.Request.Notification {
			k := ruleKey{int64(s.Request.CollectionID), n.Name}
			if _, ok := rules[k]; ok {
				continue
			}
			rule, found, err := in.rules.Resolve(ctx, k.collectionID, k.name)
			if err != nil {
				return nil, fmt.Errorf("dispatch: resolve: %w", err)
			}
			rules[k] = resolved{rule, found}
		}
	}
	now := in.now().UnixMilli()
	ctxTrace := traceParent(ctx)
	keys := keysOf(subs)
	outcomes := make([]Outcome, len(subs))
	var pending, envelopes, reserved int
	var handed []claimed
	err := in.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		pending, envelopes, handed = 0, 0, nil
		for i := range outcomes {
			outcomes[i] = Outcome{}
		}
		// Plan every submission that may be fresh: the keyless ones and
		// the first of each key in the batch.
		var (
			notes []*NotificationRecord
			plans [][]*Delivery
			owner []int // index into subs per note
		)
		for i, s := range subs {
			if s.Key != "" && keys.first[i] != i {
				continue
			}
			for j, n := range s.Request.Notification {
				note, ds := plan(s, n, rules[ruleKey{int64(s.Request.CollectionID), n.Name}], now)
				note.TraceParent = cmp.Or(s.TraceParent, ctxTrace)
				if s.Key != "" {
					note.IntakeScope, note.Ordinal = s.scope(), j
					if j == 0 {
						note.RequestHash = keys.hash[i]
					}
				}
				notes = append(notes, note)
				plans = append(plans, ds)
				owner = append(owner, i)
			}
		}
		fresh, err := in.claimKeys(ctx, tx, subs, keys, notes, owner, outcomes)
		if err != nil {
			return err
		}
		// The rest of the fresh submissions' notifications; the planned
		// notifications of keys seen before are dropped.
		var rest []*NotificationRecord
		kept := 0
		for j, note := range notes {
			if !fresh[owner[j]] {
				continue
			}
			if note.ID == 0 {
				rest = append(rest, note)
			}
			notes[kept], plans[kept], owner[kept] = note, plans[j], owner[j]
			kept++
		}
		notes, plans, owner = notes[:kept], plans[:kept], owner[:kept]
		if err := in.insertNotifications(ctx, tx, rest); err != nil {
			return err
		}
		var all []*Delivery
		for j, ds := range plans {
			for _, d := range ds {
				d.NotificationID = notes[j].ID
				if d.Status == StatusPending {
					pending++
				}
			}
			all = append(all, ds...)
		}
		// The deliveries the local workers have room for go in claimed
		// (as claim would leave them) and are handed off after the commit.
		var handOff []int // index into all
		if in.local != nil && pending > 0 {
			reserved = in.local.Reserve(pending)
			owner, until := in.local.Lease(now)
			for i, d := range all {
				if len(handOff) == reserved {
					break
				}
				if d.Status == StatusPending {
					d.Status, d.Attempts, d.ClaimedAt, d.LeaseOwner, d.LeaseUntil = StatusSending, 1, now, owner, until
					handOff = append(handOff, i)
				}
			}
			pending -= reserved
		}
		rcpts, err := in.insertDeliveries(ctx, tx, all)
		if err != nil {
			return err
		}
		trace := make(map[int64]string, len(notes))
		for _, n := range notes {
			trace[n.ID] = n.TraceParent
		}
		for _, i := range handOff {
			d := all[i]
			handed = append(handed, claimed{ID: d.ID, NotificationID: d.NotificationID, CollectionID: d.CollectionID,
				ActionID: d.ActionID, RecipientIndex: d.RecipientIndex, Channel: d.Channel, Recipient: rcpts[i],
				Attempts: d.Attempts, CreatedTime: d.CreatedTime, TraceParent: trace[d.NotificationID], LeaseUntil: d.LeaseUntil, rc: &d.Recipient})
		}
		for j, note := range notes {
			i := owner[j]
			outcomes[i].Notifications = append(outcomes[i].Notifications, summarize(note))
			if s := subs[i]; s.Actor != nil && in.outbox != nil && note.Status == NotificationAccepted {
				if err := in.outbox.Record(ctx, tx, sendChange(note, *s.Actor)); err != nil {
					return err
				}
				envelopes++
			}
		}
		// A key twice in the batch: the later one replays the first's
		// result, fresh or not.
		for i, s := range subs {
			if f := keys.first[i]; s.Key != "" && f != i && outcomes[i].Replayed && outcomes[i].Notifications == nil {
				outcomes[i].Notifications = outcomes[f].Notifications
			}
		}
		return nil
	})
	if err != nil {
		if reserved > 0 {
			in.local.Release(reserved)
		}
		return nil, fmt.Errorf("dispatch: intake: %w", err)
	}
	if len(handed) > 0 {
		in.local.Hand(handed)
	}
	if pending > 0 && in.local != nil {
		in.local.Wake()
	}
	if envelopes > 0 {
		in.outbox.Committed()
	}
	return outcomes, nil
}

// batchKeys are the dedupe keys of a batch of submissions: per submission,
// the hash of its request and the index of the first submission in the
// batch with the same (scope, key). Keyless submissions have neither.
type batchKeys struct {
	hash  []string
	first []int
}

func keysOf(subs []Submission) batchKeys {
	k := batchKeys{hash: make([]string, len(subs)), first: make([]int, len(subs))}
	byKey := map[[2]string]int{}
	for i, s := range subs {
		if s.Key == "" {
			continue
		}
		// The hash re-encodes the request: compute it once per submission.
		k.hash[i] = s.Request.Hash()
		key := [2]string{s.scope(), s.Key}
		f, ok := byKey[key]
		if !ok {
			f = i
			byKey[key] = i
		}
		k.first[i] = f
	}
	return k
}

// claimKeys is the dedupe. The first notification of each keyed
// submission (ordinal 0) carries its key and request hash, and is inserted
// here, before anything else of the batch, with ON CONFLICT DO NOTHING on
// the unique (intake_scope, idempotency_key, ordinal): the submissions whose
// row went in are fresh, and nothing else can claim their keys until this
// transaction ends (a concurrent insert of the same key waits for it, then
// finds the row). Keyless submissions are fresh. For a key seen before, the
// submission's outcome is set here: a replay of the first result when the
// request hash matches, else a conflict; and so for a key repeated in the
// batch, against the batch's first.
func (in *Intake) claimKeys(ctx context.Context, tx *gorm.DB, subs []Submission, keys batchKeys, notes []*NotificationRecord, owner []int, outcomes []Outcome) ([]bool, error) {
	fresh := make([]bool, len(subs))
	var firsts []*NotificationRecord
	firstOf := map[int]*NotificationRecord{} // keyed submission → its ordinal-0 note
	for j, note := range notes {
		if subs[owner[j]].Key == "" {
			fresh[owner[j]] = true
		} else if note.Ordinal == 0 {
			firsts = append(firsts, note)
			firstOf[owner[j]] = note
		}
	}
	if len(firsts) > 0 {
		// A stable order keeps two batches that share keys from deadlocking.
		sort.Slice(firsts, func(a, b int) bool {
			return firsts[a].IntakeScope < firsts[b].IntakeScope ||
				firsts[a].IntakeScope == firsts[b].IntakeScope && firsts[a].IdempotencyKey < firsts[b].IdempotencyKey
		})
		byKey := make(map[[2]string]*NotificationRecord, len(firsts))
		for _, n := range firsts {
			byKey[[2]string{n.IntakeScope, n.IdempotencyKey}] = n
		}
		// WHERE true: SQLite needs it to parse ON CONFLICT after a SELECT.
		conflict := " WHERE true ON CONFLICT (intake_scope, idempotency_key, ordinal) WHERE idempotency_key <> '' DO NOTHING" +
			" RETURNING id, intake_scope, idempotency_key"
		if err := in.insertNotes(ctx, tx, firsts, conflict, func(r *sql.Rows) error {
			var id int64
			var k [2]string
			if err := r.Scan(&id, &k[0], &k[1]); err != nil {
				return err
			}
			n := byKey[k]
			if n == nil {
				return fmt.Errorf("RETURNING an unknown key %q/%q", k[0], k[1])
			}
			n.ID = id
			return nil
		}); err != nil {
			return nil, fmt.Errorf("insert keyed notifications: %w", err)
		}
	}
	var seenBefore [][2]string
	for i, note := range firstOf {
		if note.ID != 0 {
			fresh[i] = true
		} else {
			seenBefore = append(seenBefore, [2]string{note.IntakeScope, note.IdempotencyKey})
		}
	}
	earlier, err := in.firstResults(ctx, tx, seenBefore)
	if err != nil {
		return nil, err
	}
	for i, s := range subs {
		if s.Key == "" {
			continue
		}
		f := keys.first[i]
		switch {
		case f == i && fresh[i]:
		case fresh[f]: // repeated in the batch: against the batch's first
			if keys.hash[i] == keys.hash[f] {
				outcomes[i].Replayed = true
			} else {
				outcomes[i].Conflict = true
			}
		default:
			r, ok := earlier[[2]string{s.scope(), s.Key}]
			switch {
			case !ok:
				return nil, fmt.Errorf("intake key %q/%q neither inserted nor found", s.scope(), s.Key)
			case r.hash != keys.hash[i]:
				outcomes[i].Conflict = true
			default:
				outcomes[i].Replayed = true
				outcomes[i].Notifications = r.notes
			}
		}
	}
	return fresh, nil
}

// firstResult is what a key accepted earlier created.
type firstResult struct {
	hash  string
	notes []Summary
}

// firstResults reads the notifications of keys accepted before, in order,
// with the request hash their first one carries.
func (in *Intake) firstResults(ctx context.Context, tx *gorm.DB, keys [][2]string) (map[[2]string]firstResult, error) {
	out := map[[2]string]firstResult{}
	for len(keys) > 0 {
		n := min(len(keys), 200)
		var conds []string
		var args []any
		for _, k := range keys[:n] {
			conds = append(conds, "(intake_scope = ? AND idempotency_key = ?)")
			args = append(args, k[0], k[1])
		}
		keys = keys[n:]
		var notes []NotificationRecord
		// idempotency_key <> '': the unique index's predicate, so that the
		// planner may use it.
		if err := tx.WithContext(ctx).Select("id, intake_scope, idempotency_key, ordinal, request_hash, name, status, reason, delivery_count, skipped_count").
			Where("idempotency_key <> '' AND ("+strings.Join(conds, " OR ")+")", args...).
			Order("ordinal").Find(&notes).Error; err != nil {
			return nil, fmt.Errorf("read notifications of keys seen before: %w", err)
		}
		for i := range notes {
			k := [2]string{notes[i].IntakeScope, notes[i].IdempotencyKey}
			r := out[k]
			if notes[i].Ordinal == 0 {
				r.hash = notes[i].RequestHash
			}
			r.notes = append(r.notes, summarize(&notes[i]))
			out[k] = r
		}
	}
	return out, nil
}

func summarize(n *NotificationRecord) Summary {
	return Summary{ID: n.ID, Name: n.Name, Status: n.Status, Reason: n.Reason, Deliveries: n.DeliveryCount, Skipped: n.SkippedCount}
}

func sendChange(n *NotificationRecord, actor auth.Principal) outbox.Change {
	return outbox.Change{
		DetailType:   outbox.NotificationsSend,
		EntityID:     n.Name,
		CollectionID: n.CollectionID,
		Payload: map[string]any{"notification": struct {
			Name       string      `json:"name"`
			Recipients []Recipient `json:"recipients"`
		}{n.Name, n.Recipients}},
		Actor: actor,
		// A send with many recipients outgrows EventBridge's 256 KB entry: its
		// envelope then points here instead (outbox.ClaimCheck).
		Href: fmt.Sprintf("/v1/collections/%d/notifications/%d", n.CollectionID, n.ID),
	}
}

// plan builds the notification row and its deliveries: one per (recipient,
// action), skipped with a reason when the recipient has no usable address on
// the action's channel or the action's condition does not hold.
func plan(s Submission, n Notification, r resolved, now int64) (*NotificationRecord, []*Delivery) {
	cid := int64(s.Request.CollectionID)
	note := &NotificationRecord{
		CollectionID:   cid,
		Name:           n.Name,
		Source:         s.Source,
		IdempotencyKey: s.Key,
		Correlation:    s.Correlation,
		Recipients:     n.Recipients,
		Status:         NotificationAccepted,
		EventID:        r.rule.EventID,
		CreatedTime:    now,
	}
	if s.Actor != nil {
		note.CreatedBy = s.Actor.UserID
	}
	if !r.found {
		note.Status = NotificationRejected
		note.Reason = fmt.Sprintf("collection %d has no ACTIVE event named %q (or the collection does not exist or is not ACTIVE)", cid, n.Name)
		return note, nil
	}
	if len(r.rule.Actions) == 0 {
		note.Reason = fmt.Sprintf("event %q has no ACTIVE actions; nothing to send", n.Name)
		return note, nil
	}
	var ds []*Delivery
	for i, rc := range n.Recipients {
		for _, a := range r.rule.Actions {
			d := &Delivery{
				CollectionID:   cid,
				ActionID:       a.ID,
				RecipientIndex: i,
				Channel:        a.Channel(),
				Recipient:      rc,
				Status:         StatusPending,
				NextAttemptAt:  now,
				CreatedTime:    now,
				UpdatedTime:    now,
			}
			d.Address, d.Reason = address(d.Channel, a.ConfigName, rc)
			if d.Reason == "" && !a.Config.Condition.Matches(rc.Macros) {
				c := a.Config.Condition
				d.Reason = fmt.Sprintf("condition not met: macro %s is %q, action %d needs %q", c.Macro, rc.Macros[c.Macro], a.ID, c.Equals)
			}
			if d.Reason != "" {
				d.Status = StatusSkipped
				note.SkippedCount++
			}
			ds = append(ds, d)
		}
	}
	note.DeliveryCount = len(ds)
	return note, ds
}

// address returns the recipient's address on channel for display, or a
// reason why there is none.
func address(channel, configName string, rc Recipient) (addr, reason string) {
	switch channel {
	case actions.ChannelEmail:
		to := rc.To()
		if len(to) == 0 {
			return "", "recipient has no email address (neither tos nor email)"
		}
		emails := make([]string, 0, len(to))
		for _, l := range [][]Address{to, rc.Ccs, rc.Bccs} {
			for _, a := range l {
				if !validEmail(a.Email) {
					return "", fmt.Sprintf("invalid email address %q", apperr.Truncate(a.Email, 100))
				}
			}
		}
		for _, a := range to {
			emails = append(emails, a.Email)
		}
		return strings.Join(emails, ","), ""
	case actions.ChannelSMS:
		if strings.TrimSpace(rc.Phone) == "" {
			return "", "recipient has no phone number"
		}
		return rc.Phone, ""
	case actions.ChannelPush:
		if strings.TrimSpace(rc.PushID) == "" {
			return "", "recipient has no pushId"
		}
		return rc.PushID, ""
	}
	return "", fmt.Sprintf("action has unknown configName %q", configName)
}

func validEmail(s string) bool {
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == strings.TrimSpace(s) && a.Name == ""
}

// insertJSON runs q, whose one parameter is a JSON array of rows (see
// store.JSONRows), on rows in chunks of 1,000, and calls scan on each row it
// returns.
func insertJSON[T any](ctx context.Context, tx *gorm.DB, q string, rows []T, scan func(*sql.Rows) error) error {
	for _, chunk := range chunks(rows, 1000) {
		doc, err := json.Marshal(chunk)
		if err != nil {
			return err
		}
		r, err := tx.WithContext(ctx).Raw(q, string(doc)).Rows()
		if err != nil {
			return err
		}
		for r.Next() {
			if err := scan(r); err != nil {
				r.Close()
				return err
			}
		}
		// Close does not report an error that ended the iteration; Err does.
		if err := errors.Join(r.Err(), r.Close()); err != nil {
			return err
		}
	}
	return nil
}

var notificationColumns = store.Columns(
	"collection_id bigint", "name text", "source text", "intake_scope text", "idempotency_key text",
	"ordinal integer", "request_hash text", "correlation text", "recipients text", "status text", "reason text",
	"event_id bigint", "delivery_count integer", "skipped_count integer", "created_by text",
	"created_time bigint", "trace_parent text",
)

type notificationRow struct {
	CollectionID   int64  `json:"collection_id"`
	Name           string `json:"name"`
	Source         string `json:"source"`
	IntakeScope    string `json:"intake_scope"`
	IdempotencyKey string `json:"idempotency_key"`
	Ordinal        int    `json:"ordinal"`
	RequestHash    string `json:"request_hash"`
	Correlation    any    `json:"correlation"`
	Recipients     any    `json:"recipients"`
	Status         string `json:"status"`
	Reason         string `json:"reason"`
	EventID        int64  `json:"event_id"`
	DeliveryCount  int    `json:"delivery_count"`
	SkippedCount   int    `json:"skipped_count"`
	CreatedBy      string `json:"created_by"`
	CreatedTime    int64  `json:"created_time"`
	TraceParent    string `json:"trace_parent"`
}

// insertNotes inserts notes with one statement per chunk, the INSERT …
// SELECT followed by suffix, and calls scan on each row the statement
// returns.
func (in *Intake) insertNotes(ctx context.Context, tx *gorm.DB, notes []*NotificationRecord, suffix string, scan func(*sql.Rows) error) error {
	rows := make([]notificationRow, len(notes))
	for i, n := range notes {
		corr, err := n.Correlation.Value()
		if err != nil {
			return err
		}
		rcpts, err := n.Recipients.Value()
		if err != nil {
			return err
		}
		rows[i] = notificationRow{n.CollectionID, n.Name, n.Source, n.IntakeScope, n.IdempotencyKey, n.Ordinal, n.RequestHash,
			corr, rcpts, n.Status, n.Reason, n.EventID, n.DeliveryCount, n.SkippedCount, n.CreatedBy, n.CreatedTime, n.TraceParent}
	}
	sel, from := store.JSONRows(in.pg, notificationColumns)
	q := "INSERT INTO notifications (" + store.ColumnList(notificationColumns) + ") SELECT " + sel + " FROM " + from + suffix
	return insertJSON(ctx, tx, q, rows, scan)
}

// insertNotifications inserts notes, none of which can conflict, and sets
// their ids.
func (in *Intake) insertNotifications(ctx context.Context, tx *gorm.DB, notes []*NotificationRecord) error {
	if len(notes) == 0 {
		return nil
	}
	at := 0
	if err := in.insertNotes(ctx, tx, notes, " RETURNING id, name", func(r *sql.Rows) error {
		var id int64
		var name string
		if err := r.Scan(&id, &name); err != nil {
			return err
		}
		// RETURNING comes back in the rows' order (gorm relies on the same
		// for VALUES); check it rather than trust it, so a surprise rolls
		// back loudly.
		if at >= len(notes) || notes[at].Name != name {
			return errors.New("RETURNING rows out of order")
		}
		notes[at].ID = id
		at++
		return nil
	}); err != nil {
		return fmt.Errorf("insert notifications: %w", err)
	}
	if at != len(notes) {
		return fmt.Errorf("insert notifications: %d ids for %d rows", at, len(notes))
	}
	return nil
}

var deliveryColumns = store.Columns(
	"notification_id bigint", "collection_id bigint", "action_id bigint", "recipient_index integer",
	"channel text", "address text", "recipient text", "status text", "reason text", "attempts integer",
	"next_attempt_at bigint", "claimed_at bigint", "lease_owner text", "lease_until bigint", "created_time bigint", "updated_time bigint",
)

type deliveryRow struct {
	NotificationID int64  `json:"notification_id"`
	CollectionID   int64  `json:"collection_id"`
	ActionID       int64  `json:"action_id"`
	RecipientIndex int    `json:"recipient_index"`
	Channel        string `json:"channel"`
	Address        string `json:"address"`
	Recipient      string `json:"recipient"`
	Status         string `json:"status"`
	Reason         string `json:"reason"`
	Attempts       int    `json:"attempts"`
	NextAttemptAt  int64  `json:"next_attempt_at"`
	ClaimedAt      int64  `json:"claimed_at"`
	LeaseOwner     string `json:"lease_owner"`
	LeaseUntil     int64  `json:"lease_until"`
	CreatedTime    int64  `json:"created_time"`
	UpdatedTime    int64  `json:"updated_time"`
}

// insertDeliveries inserts ds, sets their ids and returns each one's
// recipient as stored (JSON).
func (in *Intake) insertDeliveries(ctx context.Context, tx *gorm.DB, ds []*Delivery) ([]string, error) {
	rows := make([]deliveryRow, len(ds))
	rcpts := make([]string, len(ds))
	type planKey struct {
		notificationID, actionID int64
		recipientIndex           int
	}
	byKey := make(map[planKey]*Delivery, len(ds))
	for i, d := range ds {
		rc, err := json.Marshal(d.Recipient)
		if err != nil {
			return nil, err
		}
		rcpts[i] = string(rc)
		rows[i] = deliveryRow{d.NotificationID, d.CollectionID, d.ActionID, d.RecipientIndex, d.Channel, d.Address, rcpts[i],
			d.Status, d.Reason, d.Attempts, d.NextAttemptAt, d.ClaimedAt, d.LeaseOwner, d.LeaseUntil, d.CreatedTime, d.UpdatedTime}
		byKey[planKey{d.NotificationID, d.ActionID, d.RecipientIndex}] = d
	}
	sel, from := store.JSONRows(in.pg, deliveryColumns)
	q := "INSERT INTO deliveries (" + store.ColumnList(deliveryColumns) + ") SELECT " + sel + " FROM " + from +
		" RETURNING id, notification_id, action_id, recipient_index"
	if err := insertJSON(ctx, tx, q, rows, func(r *sql.Rows) error {
		var id int64
		var k planKey
		if err := r.Scan(&id, &k.notificationID, &k.actionID, &k.recipientIndex); err != nil {
			return err
		}
		if d := byKey[k]; d != nil {
			d.ID = id
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("insert deliveries: %w", err)
	}
	for _, d := range ds {
		if d.ID == 0 {
			return nil, fmt.Errorf("insert deliveries: no id returned for notification %d action %d recipient %d", d.NotificationID, d.ActionID, d.RecipientIndex)
		}
	}
	return rcpts, nil
}

func chunks[T any](s []T, n int) [][]T {
	var out [][]T
	for len(s) > 0 {
		k := min(n, len(s))
		out = append(out, s[:k])
		s = s[k:]
	}
	return out
}

// ErrKeyConflict is returned by Send when an Idempotency-Key was used before
// with a different request.
var ErrKeyConflict = errors.New("dispatch: idempotency key reused with a different request")

// Send is the REST API's intake: one request, deduped by key (may be empty).
// A key reused with a different request is FAILED_PRECONDITION.
func (in *Intake) Send(ctx context.Context, req Request, key string, correlation map[string]string, actor auth.Principal) (Outcome, error) {
	out, err := in.Submit(ctx, []Submission{{Source: SourceAPI, Key: key, Request: req, Correlation: correlation, Actor: &actor}})
	if err != nil {
		return Outcome{}, err
	}
	if out[0].Conflict {
		return Outcome{}, &apperr.Error{Kind: apperr.FailedPrecondition, Err: ErrKeyConflict,
			Message: "Idempotency-Key was already used with a different request body",
			Details: []apperr.Detail{{Field: "Idempotency-Key", Reason: "was used before with a different body; use a new key for a new request"}}}
	}
	return out[0], nil
}
