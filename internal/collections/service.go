package collections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/invalidate"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/schedule"
)

// Service is the collections and events API. Every method takes the caller,
// whom the HTTP edge has already authorized for the collection in question
// (authorization lives there alone; docs/architecture.md, "Authorization"):
// mutations record the caller as their author, ListCollections shows only
// what the caller may read, and nothing here refuses a caller. Methods
// return apperr errors; every mutation and its outbox envelope commit in one
// transaction.
type Service struct {
	db     *gorm.DB
	outbox *outbox.Writer
	now    func() time.Time
	repo   repository
	inv    Invalidator
}

// Invalidator tells every instance's caches that a collection or one of its
// events changed, which changes what its notification names resolve to
// (invalidate.Bus): Publish inside the mutation's transaction, Committed
// after the commit.
type Invalidator interface {
	Publish(ctx context.Context, tx *gorm.DB, k invalidate.Key) error
	Committed(k invalidate.Key)
}

// New returns a Service on db that records its changes with w. now is the
// clock for createdTime/updatedTime (time.Now when nil).
func New(db *gorm.DB, w *outbox.Writer, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{db: db, outbox: w, now: now}
}

// WithInvalidator makes every mutation announce itself through inv, and
// returns s. Call it before s serves.
func (s *Service) WithInvalidator(inv Invalidator) *Service {
	s.inv = inv
	return s
}

// CreateCollection creates a collection (the edge lets only a super admin).
func (s *Service) CreateCollection(ctx context.Context, p auth.Principal, in CollectionInput) (Collection, error) {
	if err := in.validate(); err != nil {
		return Collection{}, err
	}
	now := s.now().UnixMilli()
	c := Collection{
		Name: in.Name, Description: in.Description, Status: statusOr(in.Status),
		DefaultFromEmail: in.DefaultFromEmail, DefaultFromName: in.DefaultFromName,
		Timezone: zoneOr(in.Timezone), QuietHours: in.QuietHours, Tenant: in.Tenant,
		Version: 1, CreatedBy: p.UserID, UpdatedBy: p.UserID, CreatedTime: now, UpdatedTime: now,
	}
	err := s.inTx(ctx, 0, func(tx *gorm.DB) error {
		if err := s.repo.insertCollection(ctx, tx, &c); err != nil {
			return collectionConflict(err, c.Name)
		}
		return s.record(ctx, tx, p, outbox.CollectionCreate, c.ID, c.ID, map[string]any{"collection": c})
	})
	if err != nil {
		return Collection{}, err
	}
	return c, nil
}

// ListCollections returns one page of the collections p may read: all of
// them for a super admin, else those in p's token that its roles let it read.
func (s *Service) ListCollections(ctx context.Context, p auth.Principal, f Filter, pg Page) ([]Collection, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	var ids []int64
	if !p.SuperAdmin() {
		ids = []int64{}
		for _, id := range p.Collections {
			if p.CanRead(id) && !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
	}
	return s.repo.collections(ctx, s.db, ids, f, pg)
}

// GetCollection returns collection id.
func (s *Service) GetCollection(ctx context.Context, _ auth.Principal, id int64) (Collection, error) {
	c, ok, err := s.repo.collection(ctx, s.db, id, false)
	if err != nil {
		return Collection{}, err
	}
	if !ok {
		return Collection{}, collectionNotFound(id)
	}
	return c, nil
}

// UpdateCollection applies patch to collection id. ifVersion > 0 makes the
// update conditional on the collection still being at that version (If-Match).
// A patch that leaves a default sender name without an address is refused
// (and rolled back) once the merged row is read.
func (s *Service) UpdateCollection(ctx context.Context, p auth.Principal, id int64, patch CollectionPatch, ifVersion int64) (Collection, error) {
	if err := patch.validate(); err != nil {
		return Collection{}, err
	}
	var c Collection
	err := s.inTx(ctx, id, func(tx *gorm.DB) error {
		n, err := s.repo.updateCollection(ctx, tx, id, s.collectionChanges(p, patch), ifVersion)
		if err != nil {
			return collectionConflict(err, deref(patch.Name))
		}
		var ok bool
		if c, ok, err = s.repo.collection(ctx, tx, id, false); err != nil {
			return err
		}
		if !ok {
			return collectionNotFound(id)
		}
		if n == 0 {
			return stale("collection", id, c.Version, ifVersion)
		}
		// The row, not the patch, says whether the sender is whole: a patch
		// setting only defaultFromName is fine when an address is stored.
		var f apperr.Fields
		senderComplete(&f, c.DefaultFromEmail, c.DefaultFromName)
		if err := f.Err(); err != nil {
			return err
		}
		return s.record(ctx, tx, p, outbox.CollectionUpdate, c.ID, c.ID, map[string]any{"collection": c})
	})
	if err != nil {
		return Collection{}, err
	}
	return c, nil
}

// DeleteCollection deletes collection id, which must have no events left.
// ifVersion > 0 makes the delete conditional, as for UpdateCollection.
func (s *Service) DeleteCollection(ctx context.Context, p auth.Principal, id, ifVersion int64) (Deleted, error) {
	d := s.deleted(CollectionDeletedCode, CollectionDeletedMessage)
	err := s.inTx(ctx, id, func(tx *gorm.DB) error {
		c, ok, err := s.repo.collection(ctx, tx, id, true)
		if err != nil {
			return err
		}
		if !ok {
			return collectionNotFound(id)
		}
		if ifVersion > 0 && c.Version != ifVersion {
			return stale("collection", id, c.Version, ifVersion)
		}
		blockers, err := s.repo.eventsOf(ctx, tx, id, maxBlockers+1)
		if err != nil {
			return err
		}
		if len(blockers) > 0 {
			return inUse(fmt.Sprintf("collection %d still has events; delete them first", id), "events", blockers)
		}
		n, err := s.repo.deleteCollection(ctx, tx, id, c.Version)
		if err != nil {
			return dependentsAppeared(err, "collection", id)
		}
		if n == 0 {
			return stale("collection", id, 0, ifVersion)
		}
		return s.record(ctx, tx, p, outbox.CollectionDelete, id, id, d)
	})
	if err != nil {
		return Deleted{}, err
	}
	return d, nil
}

// CreateEvent creates an event in collection collectionID.
func (s *Service) CreateEvent(ctx context.Context, p auth.Principal, collectionID int64, in Input) (Event, error) {
	if err := in.validate(); err != nil {
		return Event{}, err
	}
	now := s.now().UnixMilli()
	e := Event{
		CollectionID: collectionID, Name: in.Name, Description: in.Description, Status: statusOr(in.Status),
		Condition: in.Condition, Required: in.Required, Version: 1, CreatedBy: p.UserID, UpdatedBy: p.UserID, CreatedTime: now, UpdatedTime: now,
	}
	err := s.inTx(ctx, collectionID, func(tx *gorm.DB) error {
		// Locking the collection makes a concurrent delete of it wait for us
		// (and then see this event), rather than race the foreign key.
		if _, ok, err := s.repo.collection(ctx, tx, collectionID, true); err != nil {
			return err
		} else if !ok {
			return collectionNotFound(collectionID)
		}
		if err := s.repo.insertEvent(ctx, tx, &e); err != nil {
			return eventConflict(err, collectionID, e.Name)
		}
		return s.record(ctx, tx, p, outbox.EventCreate, collectionID, e.ID, map[string]any{"event": e})
	})
	if err != nil {
		return Event{}, err
	}
	return e, nil
}

// ListEvents returns one page of collection collectionID's events, or
// NotFound when the collection does not exist. A page costs one query; only
// an empty page pays a second to tell "no events" from "no collection".
func (s *Service) ListEvents(ctx context.Context, _ auth.Principal, collectionID int64, f Filter, pg Page) ([]Event, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	out, err := s.repo.events(ctx, s.db, collectionID, f, pg)
	if err != nil || len(out) > 0 {
		return out, err
	}
	if _, ok, err := s.repo.collection(ctx, s.db, collectionID, false); err != nil {
		return nil, err
	} else if !ok {
		return nil, collectionNotFound(collectionID)
	}
	return out, nil
}

// GetEvent returns event id of collection collectionID.
func (s *Service) GetEvent(ctx context.Context, _ auth.Principal, collectionID, id int64) (Event, error) {
	e, ok, err := s.repo.event(ctx, s.db, collectionID, id, false)
	if err != nil {
		return Event{}, err
	}
	if !ok {
		return Event{}, eventNotFound(collectionID, id)
	}
	return e, nil
}

// UpdateEvent applies patch to event id of collection collectionID,
// conditionally on its version when ifVersion > 0.
func (s *Service) UpdateEvent(ctx context.Context, p auth.Principal, collectionID, id int64, patch Patch, ifVersion int64) (Event, error) {
	if err := patch.validate(); err != nil {
		return Event{}, err
	}
	var e Event
	err := s.inTx(ctx, collectionID, func(tx *gorm.DB) error {
		n, err := s.repo.updateEvent(ctx, tx, collectionID, id, s.changes(p, patch), ifVersion)
		if err != nil {
			return eventConflict(err, collectionID, deref(patch.Name))
		}
		var ok bool
		if e, ok, err = s.repo.event(ctx, tx, collectionID, id, false); err != nil {
			return err
		}
		if !ok {
			return eventNotFound(collectionID, id)
		}
		if n == 0 {
			return stale("event", id, e.Version, ifVersion)
		}
		return s.record(ctx, tx, p, outbox.EventUpdate, collectionID, e.ID, map[string]any{"event": e})
	})
	if err != nil {
		return Event{}, err
	}
	return e, nil
}

// DeleteEvent deletes event id of collection collectionID, which must have
// no actions left, conditionally on its version when ifVersion > 0.
func (s *Service) DeleteEvent(ctx context.Context, p auth.Principal, collectionID, id, ifVersion int64) (Deleted, error) {
	d := s.deleted(EventDeletedCode, EventDeletedMessage)
	err := s.inTx(ctx, collectionID, func(tx *gorm.DB) error {
		// The row lock holds off a concurrent action insert (its foreign key
		// check waits on it), so the dependents read below stay true.
		e, ok, err := s.repo.event(ctx, tx, collectionID, id, true)
		if err != nil {
			return err
		}
		if !ok {
			return eventNotFound(collectionID, id)
		}
		if ifVersion > 0 && e.Version != ifVersion {
			return stale("event", id, e.Version, ifVersion)
		}
		blockers, err := s.repo.actionsOf(ctx, tx, id, maxBlockers+1)
		if err != nil {
			return err
		}
		if len(blockers) > 0 {
			return inUse(fmt.Sprintf("event %d still has actions; delete them first", id), "actions", blockers)
		}
		n, err := s.repo.deleteEvent(ctx, tx, collectionID, id, e.Version)
		if err != nil {
			return dependentsAppeared(err, "event", id)
		}
		if n == 0 {
			return stale("event", id, 0, ifVersion)
		}
		return s.record(ctx, tx, p, outbox.EventDelete, collectionID, id, d)
	})
	if err != nil {
		return Deleted{}, err
	}
	return d, nil
}

// inTx runs fn in a transaction that also announces a change of collection
// collectionID (0: a new collection, which nothing has cached), and once it
// has committed, wakes the outbox relay and evicts the collection's rules
// here. Errors that are not already apperr errors become Internal.
func (s *Service) inTx(ctx context.Context, collectionID int64, fn func(tx *gorm.DB) error) error {
	announce := s.inv != nil && collectionID != 0
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := fn(tx); err != nil {
			return err
		}
		if announce {
			return s.inv.Publish(ctx, tx, invalidate.Collection(collectionID))
		}
		return nil
	})
	if err != nil {
		if _, ok := apperr.As(err); ok {
			return err
		}
		return fmt.Errorf("collections: transaction: %w", err)
	}
	s.outbox.Committed()
	if announce {
		s.inv.Committed(invalidate.Collection(collectionID))
	}
	return nil
}

// record writes the envelope for a change in tx.
func (s *Service) record(ctx context.Context, tx *gorm.DB, p auth.Principal, detailType string, collectionID, entityID int64, payload any) error {
	return s.outbox.Record(ctx, tx, outbox.Change{
		DetailType:   detailType,
		EntityID:     strconv.FormatInt(entityID, 10),
		CollectionID: collectionID,
		Payload:      payload,
		Actor:        p,
	})
}

// changes is the column set a patch writes, with who and when.
func (s *Service) changes(p auth.Principal, patch Patch) map[string]any {
	set := map[string]any{"updated_by": p.UserID, "updated_time": s.now().UnixMilli()}
	if patch.Name != nil {
		set["name"] = *patch.Name
	}
	if patch.Description != nil {
		set["description"] = *patch.Description
	}
	if patch.Status != nil {
		set["status"] = *patch.Status
	}
	if patch.Condition != nil {
		set["condition"] = *patch.Condition
	}
	if patch.Required != nil {
		set["required"] = *patch.Required
	}
	return set
}

// collectionChanges is changes plus the default sender columns the patch sets.
func (s *Service) collectionChanges(p auth.Principal, patch CollectionPatch) map[string]any {
	set := s.changes(p, patch.common())
	if patch.DefaultFromEmail != nil {
		set["default_from_email"] = *patch.DefaultFromEmail
	}
	if patch.DefaultFromName != nil {
		set["default_from_name"] = *patch.DefaultFromName
	}
	if patch.Timezone != nil {
		set["timezone"] = zoneOr(*patch.Timezone)
	}
	if patch.QuietHours.Set {
		set["quiet_hours"] = quietHoursColumn(patch.QuietHours.Window)
	}
	if patch.Tenant != nil {
		set["tenant"] = *patch.Tenant
	}
	return set
}

func (s *Service) deleted(code, msg string) Deleted {
	return outbox.NewDeleted(code, msg, s.now())
}

func statusOr(status string) string {
	if status == "" {
		return StatusActive
	}
	return status
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func collectionNotFound(id int64) error {
	return apperr.New(apperr.NotFound, "collection %d does not exist", id)
}

func eventNotFound(collectionID, id int64) error {
	return apperr.New(apperr.NotFound, "event %d does not exist in collection %d", id, collectionID)
}

// stale is the 412 for an If-Match that no longer holds. current is 0 when
// the row changed between the read and the write (only possible on a
// database that did not lock the row).
func stale(entity string, id, current, want int64) error {
	e := apperr.New(apperr.PreconditionFailed, "%s %d is no longer at version %d; fetch it again", entity, id, want)
	if current > 0 {
		e.Details = []apperr.Detail{{Field: "If-Match", Reason: fmt.Sprintf("the current version is \"%d\"", current)}}
	}
	return e
}

// inUse is the 409 for a delete that dependents block; it names each one.
func inUse(msg, kind string, blockers []dependent) error {
	e := apperr.New(apperr.FailedPrecondition, "%s", msg)
	for i, b := range blockers {
		if i == maxBlockers {
			e.Details = append(e.Details, apperr.Detail{Field: kind, Reason: fmt.Sprintf("and more beyond the first %d", maxBlockers)})
			break
		}
		e.Details = append(e.Details, apperr.Detail{
			Field:  fmt.Sprintf("%s/%d", kind, b.ID),
			Reason: fmt.Sprintf("%q still depends on it", b.Name),
		})
	}
	return e
}

// dependentsAppeared maps the foreign-key failure of a delete that lost a
// race with an insert to the 409 the dependents check gives.
func dependentsAppeared(err error, entity string, id int64) error {
	if errors.Is(err, gorm.ErrForeignKeyViolated) {
		return &apperr.Error{Kind: apperr.FailedPrecondition, Message: fmt.Sprintf("%s %d still has dependents; delete them first", entity, id), Err: err}
	}
	return err
}

func collectionConflict(err error, name string) error {
	if errors.Is(err, gorm.ErrDuplicatedKey) {
		return &apperr.Error{
			Kind: apperr.AlreadyExists, Message: fmt.Sprintf("a collection named %q already exists", name),
			Details: []apperr.Detail{{Field: "name", Reason: "is already used by another collection"}}, Err: err,
		}
	}
	return err
}

func eventConflict(err error, collectionID int64, name string) error {
	switch {
	case errors.Is(err, gorm.ErrDuplicatedKey):
		return &apperr.Error{
			Kind: apperr.AlreadyExists, Message: fmt.Sprintf("an event named %q already exists in collection %d", name, collectionID),
			Details: []apperr.Detail{{Field: "name", Reason: "is already used by another event in this collection"}}, Err: err,
		}
	case errors.Is(err, gorm.ErrForeignKeyViolated):
		return &apperr.Error{Kind: apperr.NotFound, Message: fmt.Sprintf("collection %d does not exist", collectionID), Err: err}
	}
	return err
}

// zoneOr is zone, UTC when empty: a collection always names its zone.
func zoneOr(zone string) string {
	if zone == "" {
		return "UTC"
	}
	return zone
}

// quietHoursColumn is w as the quiet_hours column stores it (JSON, NULL
// for none), as gorm's json serializer writes it on insert.
func quietHoursColumn(w *schedule.Window) any {
	if w == nil {
		return nil
	}
	b, _ := json.Marshal(w) // two strings: cannot fail
	return string(b)
}
