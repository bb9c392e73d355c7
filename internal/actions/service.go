package actions

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/invalidate"
	"github.com/notificationservice/notificationservice/internal/macros"
	"github.com/notificationservice/notificationservice/internal/outbox"
)

// Recorder writes a mutation's EventBridge envelope in the mutation's own
// transaction (outbox.Writer does).
type Recorder interface {
	Record(ctx context.Context, tx *gorm.DB, c outbox.Change) error
	Committed()
}

// Invalidator tells every instance's caches that an action changed
// (invalidate.Bus): Publish inside the mutation's transaction, so the news
// goes out only if it commits; Committed after the commit, for this
// instance's own caches at once.
type Invalidator interface {
	Publish(ctx context.Context, tx *gorm.DB, k invalidate.Key) error
	Committed(k invalidate.Key)
}

// Input creates an action. Status defaults to ACTIVE.
type Input struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Status      string `json:"status"`
	EventID     int64  `json:"eventId"`
	ConfigName  string `json:"configName"`
	Template    string `json:"template"`
	Config      Config `json:"config"`
}

// Patch changes the fields it sets and leaves the others alone. Config, when
// set, replaces the whole config: its fields depend on one another (a
// subject without a body is no email), so they are not merged one by one.
type Patch struct {
	Name        *string `json:"name"`
	Description *string `json:"description"`
	Status      *string `json:"status"`
	EventID     *int64  `json:"eventId"`
	ConfigName  *string `json:"configName"`
	Template    *string `json:"template"`
	Config      *Config `json:"config"`
}

// Empty reports whether the patch changes nothing.
func (p Patch) Empty() bool {
	return p.Name == nil && p.Description == nil && p.Status == nil && p.EventID == nil &&
		p.ConfigName == nil && p.Template == nil && p.Config == nil
}

// apply returns a with the patch's fields set.
func (p Patch) apply(a Action) Action {
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	set(&a.Name, p.Name)
	set(&a.Description, p.Description)
	set(&a.Status, p.Status)
	set(&a.ConfigName, p.ConfigName)
	set(&a.Template, p.Template)
	if p.EventID != nil {
		a.EventID = *p.EventID
	}
	if p.Config != nil {
		a.Config = *p.Config
	}
	return a
}

// Filter narrows a list; empty fields match everything.
type Filter struct {
	EventID    int64
	Status     string
	ConfigName string
}

// Page asks for at most Limit actions with an id greater than After, in id
// order: a keyset page, stable while rows are added or removed.
type Page struct {
	Limit int
	After int64
}

// Deleted is the catalogue's delete payload: the body of a DELETE response
// and the payload of the action/delete envelope.
type Deleted = outbox.Deleted

// The delete payload's code and message, as the catalogue shows them.
const (
	DeletedCode    = "NOACDEL0000"
	DeletedMessage = "Action is deleted successfully"
)

// Envelope is the payload of the action/create and action/update envelopes:
// the catalogue's {"action": {...}}, whose action carries config too.
type Envelope struct {
	Action Action `json:"action"`
}

// maxUpdateAttempts bounds the retries of an update without If-Match that
// keeps losing the race to concurrent updates.
const maxUpdateAttempts = 5

// errRaced rolls back an update whose row changed after it was read.
var errRaced = errors.New("actions: row changed concurrently")

// Service creates, reads, changes and deletes actions. The caller it takes
// has been authorized by the HTTP edge (authorization lives there alone;
// docs/architecture.md, "Authorization"); mutations record it as their
// author. Every mutation and its outbox envelope commit in one transaction.
type Service struct {
	db    *gorm.DB
	out   Recorder
	now   func() time.Time
	repo  repository
	cache *Cache
	inv   Invalidator
	lim   macros.RenderLimits // what a template may be; zero: the defaults
}

// New returns a Service on db that records envelopes with out. now is
// the clock (time.Now when nil).
func New(db *gorm.DB, out Recorder, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{db: db, out: out, now: now}
}

// WithRenderLimits makes create and update refuse templates over lim
// (templates.* in the config), and returns s. Without it the defaults apply.
func (s *Service) WithRenderLimits(lim macros.RenderLimits) *Service {
	s.lim = lim
	return s
}

// WithCache makes Get read through cache and every mutation announce itself
// through inv, and returns s. inv is needed even when cache is nil: other
// instances may cache. Call it before s serves.
func (s *Service) WithCache(cache *Cache, inv Invalidator) *Service {
	s.cache, s.inv = cache, inv
	return s
}

// publish announces, in tx, that action id changed.
func (s *Service) publish(ctx context.Context, tx *gorm.DB, collectionID, id int64) error {
	if s.inv == nil {
		return nil
	}
	return s.inv.Publish(ctx, tx, invalidate.Action(collectionID, id))
}

// committed evicts action id here, after its change committed.
func (s *Service) committed(collectionID, id int64) {
	if s.inv != nil {
		s.inv.Committed(invalidate.Action(collectionID, id))
	}
}

// Create validates in and stores it as a new action of collectionID.
func (s *Service) Create(ctx context.Context, p auth.Principal, collectionID int64, in Input) (Action, error) {
	now := s.now().UnixMilli()
	a := Action{
		CollectionID: collectionID,
		Name:         in.Name,
		Status:       in.Status,
		Description:  in.Description,
		EventID:      in.EventID,
		ConfigName:   in.ConfigName,
		Template:     in.Template,
		Config:       in.Config,
		Version:      1,
		CreatedBy:    p.UserID,
		UpdatedBy:    p.UserID,
		UpdatedTime:  now,
		CreatedTime:  now,
	}
	if a.Status == "" {
		a.Status = StatusActive
	}
	var f apperr.Fields
	validate(a, &f, s.lim)
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := s.checkEvent(ctx, tx, &f, collectionID, a.EventID, true); err != nil {
			return err
		}
		if err := s.checkWebhook(ctx, tx, &f, a); err != nil {
			return err
		}
		if err := f.Err(); err != nil {
			return err
		}
		if err := s.checkName(ctx, tx, a); err != nil {
			return err
		}
		if err := s.repo.insert(ctx, tx, &a); err != nil {
			return err
		}
		if err := s.publish(ctx, tx, collectionID, a.ID); err != nil {
			return err
		}
		return s.out.Record(ctx, tx, s.change(outbox.ActionCreate, a.ID, collectionID, Envelope{Action: a}, p))
	})
	if err != nil {
		return Action{}, translate(err)
	}
	s.out.Committed()
	s.committed(collectionID, a.ID)
	return a, nil
}

// Get returns action id of collectionID, from the cache when it holds it
// (WithCache).
func (s *Service) Get(ctx context.Context, _ auth.Principal, collectionID, id int64) (Action, error) {
	a, f, hit := s.cache.action(collectionID, id)
	if hit {
		return a, nil
	}
	a, ok, err := s.repo.get(ctx, s.db, collectionID, id)
	if err != nil {
		return Action{}, translate(err)
	}
	if !ok {
		return Action{}, notFound(collectionID, id)
	}
	s.cache.putAction(f, a)
	return a, nil
}

// List returns one page of collectionID's actions that match f, in id order.
// A page that is not empty costs one query; an empty one checks that the
// collection exists (NOT_FOUND otherwise).
func (s *Service) List(ctx context.Context, _ auth.Principal, collectionID int64, f Filter, pg Page) ([]Action, error) {
	if err := errors.Join(f.validate(), pg.validate()); err != nil {
		return nil, joinInvalid(err)
	}
	out, err := s.repo.list(ctx, s.db, collectionID, f, pg)
	if err != nil {
		return nil, translate(err)
	}
	if len(out) == 0 {
		ok, err := s.repo.collectionExists(ctx, s.db, collectionID)
		if err != nil {
			return nil, translate(err)
		}
		if !ok {
			return nil, apperr.New(apperr.NotFound, "collection %d not found", collectionID)
		}
	}
	return out, nil
}

// Update applies patch to action id and validates the result as a whole.
// With ifVersion > 0 the action must still be at that version (else
// PRECONDITION_FAILED); without it, an update that loses a race to another is
// retried on the new state, so no change is lost.
func (s *Service) Update(ctx context.Context, p auth.Principal, collectionID, id int64, patch Patch, ifVersion int64) (Action, error) {
	if patch.Empty() {
		return Action{}, apperr.Invalid("the patch changes nothing", apperr.Detail{Field: "body",
			Reason: "must set at least one of name, description, status, eventId, configName, template, config"})
	}
	for attempt := 1; ; attempt++ {
		var out Action
		err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			cur, ok, err := s.repo.get(ctx, tx, collectionID, id)
			if err != nil {
				return err
			}
			if !ok {
				return notFound(collectionID, id)
			}
			if ifVersion > 0 && cur.Version != ifVersion {
				return stale(id, ifVersion, cur.Version)
			}
			next := patch.apply(cur)
			next.Version = cur.Version + 1
			next.UpdatedBy = p.UserID
			next.UpdatedTime = s.now().UnixMilli()

			var f apperr.Fields
			validate(next, &f, s.lim)
			moved := next.EventID != cur.EventID
			renamed := next.Name != cur.Name
			if moved && next.EventID > 0 {
				if err := s.checkEvent(ctx, tx, &f, collectionID, next.EventID, false); err != nil {
					return err
				}
			}
			if next.Config.WebhookID != cur.Config.WebhookID || next.ConfigName != cur.ConfigName {
				if err := s.checkWebhook(ctx, tx, &f, next); err != nil {
					return err
				}
			}
			if err := f.Err(); err != nil {
				return err
			}
			if moved || renamed {
				if !moved { // a rename must hold the event lock the name check relies on
					if _, err := s.repo.lockEventOf(ctx, tx, collectionID, next.EventID); err != nil {
						return err
					}
				}
				if err := s.checkName(ctx, tx, next); err != nil {
					return err
				}
			}
			n, err := s.repo.update(ctx, tx, next, cur.Version)
			if err != nil {
				return err
			}
			if n == 0 {
				if ifVersion > 0 {
					return stale(id, ifVersion, 0)
				}
				return errRaced
			}
			out = next
			if err := s.publish(ctx, tx, collectionID, id); err != nil {
				return err
			}
			return s.out.Record(ctx, tx, s.change(outbox.ActionUpdate, id, collectionID, Envelope{Action: next}, p))
		})
		if errors.Is(err, errRaced) {
			if attempt < maxUpdateAttempts {
				continue
			}
			return Action{}, &apperr.Error{Kind: apperr.PreconditionFailed,
				Message: fmt.Sprintf("action %d kept changing while it was being updated; retry", id), Err: err}
		}
		if err != nil {
			return Action{}, translate(err)
		}
		s.out.Committed()
		s.committed(collectionID, id)
		return out, nil
	}
}

// Delete removes action id, only at ifVersion when ifVersion > 0, and returns
// the catalogue's delete payload (also the envelope's payload).
func (s *Service) Delete(ctx context.Context, p auth.Principal, collectionID, id, ifVersion int64) (Deleted, error) {
	d := outbox.NewDeleted(DeletedCode, DeletedMessage, s.now())
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		n, err := s.repo.delete(ctx, tx, collectionID, id, ifVersion)
		if err != nil {
			return err
		}
		if n == 0 {
			cur, ok, err := s.repo.get(ctx, tx, collectionID, id)
			if err != nil {
				return err
			}
			if !ok {
				return notFound(collectionID, id)
			}
			return stale(id, ifVersion, cur.Version)
		}
		if err := s.publish(ctx, tx, collectionID, id); err != nil {
			return err
		}
		return s.out.Record(ctx, tx, s.change(outbox.ActionDelete, id, collectionID, d, p))
	})
	if err != nil {
		return Deleted{}, translate(err)
	}
	s.out.Committed()
	s.committed(collectionID, id)
	return d, nil
}

// checkEvent makes sure eventID is an event of collectionID, recording an
// eventId detail when it is not, and locks it (PostgreSQL) for the name
// check. A missing collection is NOT_FOUND whatever the body says. With
// needCollection false the caller already knows the collection exists.
func (s *Service) checkEvent(ctx context.Context, tx *gorm.DB, f *apperr.Fields, collectionID, eventID int64, needCollection bool) error {
	if eventID > 0 {
		ok, err := s.repo.lockEventOf(ctx, tx, collectionID, eventID)
		if err != nil || ok {
			return err
		}
	}
	if needCollection {
		ok, err := s.repo.collectionExists(ctx, tx, collectionID)
		if err != nil {
			return err
		}
		if !ok {
			return apperr.New(apperr.NotFound, "collection %d not found", collectionID)
		}
	}
	if eventID > 0 {
		f.Add("eventId", fmt.Sprintf("is not an event of collection %d", collectionID))
	}
	return nil
}

// checkWebhook records a config.webhookId detail when a SendWebhookConfig
// action names an endpoint that is not one of its collection's. The state
// is not checked: an endpoint may be registered, and the action saved,
// before it validates; until it is ACTIVE the action's deliveries fail
// saying so (docs/webhooks.md).
func (s *Service) checkWebhook(ctx context.Context, tx *gorm.DB, f *apperr.Fields, a Action) error {
	if a.ConfigName != ConfigWebhook || a.Config.WebhookID <= 0 {
		return nil
	}
	ok, err := s.repo.webhookOf(ctx, tx, a.CollectionID, a.Config.WebhookID)
	if err != nil || ok {
		return err
	}
	f.Add("config.webhookId", fmt.Sprintf("is not a webhook of collection %d", a.CollectionID))
	return nil
}

// checkName refuses a second action of the same name on one event: the
// event's actions are listed and fired by name, and two alike are a mistake.
func (s *Service) checkName(ctx context.Context, tx *gorm.DB, a Action) error {
	other, err := s.repo.sameName(ctx, tx, a.EventID, a.Name, a.ID)
	if err != nil {
		return err
	}
	if other != 0 {
		return &apperr.Error{Kind: apperr.AlreadyExists,
			Message: fmt.Sprintf("event %d already has an action named %q", a.EventID, a.Name),
			Details: []apperr.Detail{{Field: "name", Reason: fmt.Sprintf("is taken by action %d of event %d", other, a.EventID)}}}
	}
	return nil
}

func (s *Service) change(detailType string, id, collectionID int64, payload any, p auth.Principal) outbox.Change {
	return outbox.Change{
		DetailType:   detailType,
		EntityID:     strconv.FormatInt(id, 10),
		CollectionID: collectionID,
		Payload:      payload,
		Actor:        p,
	}
}

func notFound(collectionID, id int64) error {
	return &apperr.Error{Kind: apperr.NotFound,
		Message: fmt.Sprintf("action %d not found in collection %d", id, collectionID), Err: ErrNotFound}
}

// stale is the error for an If-Match that names an old version; current is
// 0 when it is not known.
func stale(id, ifVersion, current int64) error {
	e := &apperr.Error{Kind: apperr.PreconditionFailed,
		Message: fmt.Sprintf("action %d is no longer at version %d", id, ifVersion)}
	if current > 0 {
		e.Details = []apperr.Detail{{Field: "If-Match", Reason: fmt.Sprintf("the current ETag is \"%d\"", current)}}
	}
	return e
}

// joinInvalid merges INVALID_ARGUMENT errors into one with all their details.
func joinInvalid(err error) error {
	var details []apperr.Detail
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		if ae, ok := apperr.As(e); ok {
			details = append(details, ae.Details...)
		}
	}
	return apperr.Invalid("request has invalid parameters", details...)
}

// translate turns database errors into apperr kinds; an error that is
// already one passes through, anything else stays internal.
func translate(err error) error {
	if _, ok := apperr.As(err); ok {
		return err
	}
	switch {
	case errors.Is(err, gorm.ErrForeignKeyViolated):
		return &apperr.Error{Kind: apperr.FailedPrecondition,
			Message: "the action is referenced by, or refers to, a row that changed", Err: err}
	case errors.Is(err, gorm.ErrDuplicatedKey):
		return &apperr.Error{Kind: apperr.AlreadyExists, Message: "the action already exists", Err: err}
	}
	return err
}
