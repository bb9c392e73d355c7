package actions

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// lockEvent holds an event row until the transaction ends so that two
// transactions adding same-named actions to one event run one after the other
// (PostgreSQL). NO KEY UPDATE still lets other inserts take their foreign-key
// share lock on the event. SQLite drops the clause: there BEGIN IMMEDIATE
// already holds the one write lock for the whole transaction.
var lockEvent = clause.Locking{Strength: "NO KEY UPDATE"}

// repository is the SQL for actions. Each method runs on the handle it is
// given, so the service decides what shares a transaction.
type repository struct{}

// columns are the actions columns in Action's field order; scan reads them.
// get and list scan by hand rather than through gorm's reflection: they are
// the API's hottest reads (docs/benchmarks.md).
const columns = "id, collection_id, name, status, description, event_id, config_name, template, config, " +
	"version, created_by, updated_by, updated_time, created_time"

func scan(row interface{ Scan(...any) error }, a *Action) error {
	return row.Scan(&a.ID, &a.CollectionID, &a.Name, &a.Status, &a.Description, &a.EventID, &a.ConfigName,
		&a.Template, &a.Config, &a.Version, &a.CreatedBy, &a.UpdatedBy, &a.UpdatedTime, &a.CreatedTime)
}

func (repository) get(ctx context.Context, db *gorm.DB, collectionID, id int64) (Action, bool, error) {
	var a Action
	row := db.WithContext(ctx).Raw("SELECT "+columns+" FROM actions WHERE id = ? AND collection_id = ?", id, collectionID).Row()
	err := scan(row, &a)
	if errors.Is(err, sql.ErrNoRows) {
		return Action{}, false, nil
	}
	if err != nil {
		return Action{}, false, fmt.Errorf("actions: get %d: %w", id, err)
	}
	return a, true, nil
}

// list returns one keyset page in id order, filtered, in one query.
func (repository) list(ctx context.Context, db *gorm.DB, collectionID int64, f Filter, p Page) ([]Action, error) {
	var (
		where strings.Builder
		args  = []any{collectionID, p.After}
	)
	where.WriteString("collection_id = ? AND id > ?")
	if f.EventID != 0 {
		where.WriteString(" AND event_id = ?")
		args = append(args, f.EventID)
	}
	if f.Status != "" {
		where.WriteString(" AND status = ?")
		args = append(args, f.Status)
	}
	if f.ConfigName != "" {
		where.WriteString(" AND config_name = ?")
		args = append(args, f.ConfigName)
	}
	args = append(args, p.Limit)
	rows, err := db.WithContext(ctx).Raw("SELECT "+columns+" FROM actions WHERE "+where.String()+" ORDER BY id LIMIT ?", args...).Rows()
	if err != nil {
		return nil, fmt.Errorf("actions: list in collection %d: %w", collectionID, err)
	}
	defer rows.Close()
	out := []Action{}
	for rows.Next() {
		var a Action
		if err := scan(rows, &a); err != nil {
			return nil, fmt.Errorf("actions: list in collection %d: %w", collectionID, err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("actions: list in collection %d: %w", collectionID, err)
	}
	return out, nil
}

// collectionExists tells an empty page of a missing collection (404) from an
// empty page of an existing one.
func (repository) collectionExists(ctx context.Context, db *gorm.DB, id int64) (bool, error) {
	var n int64
	if err := db.WithContext(ctx).Table("collections").Where("id = ?", id).Limit(1).Count(&n).Error; err != nil {
		return false, fmt.Errorf("actions: collection %d: %w", id, err)
	}
	return n > 0, nil
}

// webhookOf reports whether webhook endpoint id belongs to collectionID.
// The endpoints table is internal/webhooks'; actions reads it by name, as
// it reads collections, so that neither package imports the other.
func (repository) webhookOf(ctx context.Context, db *gorm.DB, collectionID, id int64) (bool, error) {
	var n int64
	if err := db.WithContext(ctx).Table("webhooks").Where("id = ? AND collection_id = ?", id, collectionID).Count(&n).Error; err != nil {
		return false, fmt.Errorf("actions: webhook %d: %w", id, err)
	}
	return n > 0, nil
}

// lockEventOf locks event id if it belongs to collectionID and reports
// whether it does.
func (repository) lockEventOf(ctx context.Context, tx *gorm.DB, collectionID, id int64) (bool, error) {
	var ids []int64
	err := tx.WithContext(ctx).Table("events").Clauses(lockEvent).
		Where("id = ? AND collection_id = ?", id, collectionID).Pluck("id", &ids).Error
	if err != nil {
		return false, fmt.Errorf("actions: event %d: %w", id, err)
	}
	return len(ids) > 0, nil
}

// sameName returns the id of another action of eventID named name, or 0.
func (repository) sameName(ctx context.Context, tx *gorm.DB, eventID int64, name string, except int64) (int64, error) {
	var ids []int64
	err := tx.WithContext(ctx).Table("actions").
		Where("event_id = ? AND name = ? AND id <> ?", eventID, name, except).Limit(1).Pluck("id", &ids).Error
	if err != nil {
		return 0, fmt.Errorf("actions: name check on event %d: %w", eventID, err)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	return ids[0], nil
}

func (repository) insert(ctx context.Context, tx *gorm.DB, a *Action) error {
	if err := tx.WithContext(ctx).Create(a).Error; err != nil {
		return fmt.Errorf("actions: insert: %w", err)
	}
	return nil
}

// update writes a's fields only while the row is still at version: the
// compare and the write are one statement, so of two concurrent updates from
// the same version exactly one wins. It returns the rows changed (0 or 1).
func (repository) update(ctx context.Context, tx *gorm.DB, a Action, version int64) (int64, error) {
	res := tx.WithContext(ctx).Model(&Action{}).
		Where("id = ? AND collection_id = ? AND version = ?", a.ID, a.CollectionID, version).
		Updates(map[string]any{
			"name":         a.Name,
			"description":  a.Description,
			"status":       a.Status,
			"event_id":     a.EventID,
			"config_name":  a.ConfigName,
			"template":     a.Template,
			"config":       a.Config,
			"version":      a.Version,
			"updated_by":   a.UpdatedBy,
			"updated_time": a.UpdatedTime,
		})
	if res.Error != nil {
		return 0, fmt.Errorf("actions: update %d: %w", a.ID, res.Error)
	}
	return res.RowsAffected, nil
}

// delete removes the action, only at ifVersion when ifVersion > 0, and
// returns the rows deleted.
func (repository) delete(ctx context.Context, tx *gorm.DB, collectionID, id, ifVersion int64) (int64, error) {
	q := tx.WithContext(ctx).Where("id = ? AND collection_id = ?", id, collectionID)
	if ifVersion > 0 {
		q = q.Where("version = ?", ifVersion)
	}
	res := q.Delete(&Action{})
	if res.Error != nil {
		return 0, fmt.Errorf("actions: delete %d: %w", id, res.Error)
	}
	return res.RowsAffected, nil
}
