package collections

import (
	"context"
	"errors"
	"fmt"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// maxBlockers caps how many dependents a refused delete names: enough to act
// on, never an unbounded error body.
const maxBlockers = 100

// dependent is a row that blocks a delete: an action of an event, or an
// event of a collection.
type dependent struct {
	ID   int64
	Name string
}

// repository is the SQL for collections and events. Each method runs on the
// handle it is given, so the service decides what shares a transaction.
type repository struct{}

// forUpdate locks the rows a query reads until the transaction ends
// (PostgreSQL). SQLite drops the clause: there BEGIN IMMEDIATE already holds
// the one write lock for the whole transaction.
var forUpdate = clause.Locking{Strength: clause.LockingStrengthUpdate}

func (repository) collection(ctx context.Context, db *gorm.DB, id int64, lock bool) (Collection, bool, error) {
	q := db.WithContext(ctx)
	if lock {
		q = q.Clauses(forUpdate)
	}
	var c Collection
	err := q.Where("id = ?", id).Take(&c).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return Collection{}, false, nil
	}
	if err != nil {
		return Collection{}, false, fmt.Errorf("collections: get collection %d: %w", id, err)
	}
	return c, true, nil
}

// collections returns one page in id order. ids, when not nil, limits the
// page to those collections (an empty non-nil ids returns nothing).
func (repository) collections(ctx context.Context, db *gorm.DB, ids []int64, f Filter, p Page) ([]Collection, error) {
	out := []Collection{}
	if ids != nil && len(ids) == 0 {
		return out, nil
	}
	q := db.WithContext(ctx).Where("id > ?", p.After)
	if ids != nil {
		q = q.Where("id IN ?", ids)
	}
	if f.Status != "" {
		q = q.Where("status = ?", f.Status)
	}
	if f.Name != "" {
		q = q.Where("name = ?", f.Name)
	}
	if err := q.Order("id").Limit(p.Limit).Find(&out).Error; err != nil {
		return nil, fmt.Errorf("collections: list collections: %w", err)
	}
	return out, nil
}

func (repository) insertCollection(ctx context.Context, tx *gorm.DB, c *Collection) error {
	if err := tx.WithContext(ctx).Create(c).Error; err != nil {
		return fmt.Errorf("collections: insert collection: %w", err)
	}
	return nil
}

// updateRow applies set to the row of model matching where, bumping its
// version, and only when its version is still ifVersion (when ifVersion > 0):
// the compare and the write are one statement, so two concurrent PATCHes
// with the same If-Match cannot both win. It returns the rows changed.
func updateRow(ctx context.Context, tx *gorm.DB, model any, set map[string]any, ifVersion int64, where string, args ...any) (int64, error) {
	set["version"] = gorm.Expr("version + 1")
	q := tx.WithContext(ctx).Model(model).Where(where, args...)
	if ifVersion > 0 {
		q = q.Where("version = ?", ifVersion)
	}
	res := q.Updates(set)
	return res.RowsAffected, res.Error
}

// deleteRow deletes the row of model matching where, only at ifVersion when
// ifVersion > 0, and returns the rows deleted.
func deleteRow(ctx context.Context, tx *gorm.DB, model any, ifVersion int64, where string, args ...any) (int64, error) {
	q := tx.WithContext(ctx).Where(where, args...)
	if ifVersion > 0 {
		q = q.Where("version = ?", ifVersion)
	}
	res := q.Delete(model)
	return res.RowsAffected, res.Error
}

func (repository) updateCollection(ctx context.Context, tx *gorm.DB, id int64, set map[string]any, ifVersion int64) (int64, error) {
	n, err := updateRow(ctx, tx, &Collection{}, set, ifVersion, "id = ?", id)
	if err != nil {
		return 0, fmt.Errorf("collections: update collection %d: %w", id, err)
	}
	return n, nil
}

func (repository) deleteCollection(ctx context.Context, tx *gorm.DB, id, ifVersion int64) (int64, error) {
	n, err := deleteRow(ctx, tx, &Collection{}, ifVersion, "id = ?", id)
	if err != nil {
		return 0, fmt.Errorf("collections: delete collection %d: %w", id, err)
	}
	return n, nil
}

// eventsOf returns up to limit events of a collection, id and name only: the
// ones that block its delete.
func (repository) eventsOf(ctx context.Context, tx *gorm.DB, collectionID int64, limit int) ([]dependent, error) {
	var out []dependent
	err := tx.WithContext(ctx).Table("events").Select("id, name").
		Where("collection_id = ?", collectionID).Order("id").Limit(limit).Scan(&out).Error
	if err != nil {
		return nil, fmt.Errorf("collections: events of collection %d: %w", collectionID, err)
	}
	return out, nil
}

func (repository) event(ctx context.Context, db *gorm.DB, collectionID, id int64, lock bool) (Event, bool, error) {
	q := db.WithContext(ctx)
	if lock {
		q = q.Clauses(forUpdate)
	}
	var e Event
	err := q.Where("id = ? AND collection_id = ?", id, collectionID).Take(&e).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return Event{}, false, nil
	}
	if err != nil {
		return Event{}, false, fmt.Errorf("collections: get event %d: %w", id, err)
	}
	return e, true, nil
}

// events returns one page of a collection's events in id order.
func (repository) events(ctx context.Context, db *gorm.DB, collectionID int64, f Filter, p Page) ([]Event, error) {
	out := []Event{}
	q := db.WithContext(ctx).Where("collection_id = ? AND id > ?", collectionID, p.After)
	if f.Status != "" {
		q = q.Where("status = ?", f.Status)
	}
	if f.Name != "" {
		q = q.Where("name = ?", f.Name)
	}
	if err := q.Order("id").Limit(p.Limit).Find(&out).Error; err != nil {
		return nil, fmt.Errorf("collections: list events of %d: %w", collectionID, err)
	}
	return out, nil
}

func (repository) insertEvent(ctx context.Context, tx *gorm.DB, e *Event) error {
	if err := tx.WithContext(ctx).Create(e).Error; err != nil {
		return fmt.Errorf("collections: insert event: %w", err)
	}
	return nil
}

func (repository) updateEvent(ctx context.Context, tx *gorm.DB, collectionID, id int64, set map[string]any, ifVersion int64) (int64, error) {
	n, err := updateRow(ctx, tx, &Event{}, set, ifVersion, "id = ? AND collection_id = ?", id, collectionID)
	if err != nil {
		return 0, fmt.Errorf("collections: update event %d: %w", id, err)
	}
	return n, nil
}

func (repository) deleteEvent(ctx context.Context, tx *gorm.DB, collectionID, id, ifVersion int64) (int64, error) {
	n, err := deleteRow(ctx, tx, &Event{}, ifVersion, "id = ? AND collection_id = ?", id, collectionID)
	if err != nil {
		return 0, fmt.Errorf("collections: delete event %d: %w", id, err)
	}
	return n, nil
}

// actionsOf returns up to limit actions of an event, id and name only: the
// ones that block its delete. It reads the actions table directly so this
// package needs nothing from package actions.
func (repository) actionsOf(ctx context.Context, tx *gorm.DB, eventID int64, limit int) ([]dependent, error) {
	var out []dependent
	err := tx.WithContext(ctx).Table("actions").Select("id, name").
		Where("event_id = ?", eventID).Order("id").Limit(limit).Scan(&out).Error
	if err != nil {
		return nil, fmt.Errorf("collections: actions of event %d: %w", eventID, err)
	}
	return out, nil
}
