package preferences

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/invalidate"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/store"
)

// row is one preferences table row.
type row struct {
	CollectionID int64  `gorm:"column:collection_id;primaryKey"`
	RecipientKey string `gorm:"column:recipient_key;primaryKey"`
	Document     string `gorm:"column:document"`
	Version      int64  `gorm:"column:version"`
	UpdatedBy    string `gorm:"column:updated_by"`
	CreatedTime  int64  `gorm:"column:created_time"`
	UpdatedTime  int64  `gorm:"column:updated_time"`
}

func (row) TableName() string { return "preferences" }

// Changed is the payload of a preferences/update envelope: whose
// preferences changed and the whole document after the change.
type Changed struct {
	CollectionID int64    `json:"collectionId"`
	RecipientID  string   `json:"recipientId"`
	Preferences  Document `json:"preferences"`
	Source       string   `json:"source"` // api, or unsubscribe (a one-click link)
	UpdatedTime  int64    `json:"updatedTime"`
}

// Sources of a change (Changed.Source).
const (
	SourceAPI         = "api"
	SourceUnsubscribe = "unsubscribe"
)

// Service reads and changes preferences. As every domain service, it trusts
// the HTTP edge to have authorized the caller for the collection, and takes
// the caller only to record it as the author of the change.
type Service struct {
	db     *gorm.DB
	outbox *outbox.Writer
	now    func() time.Time
	inv    Invalidator // nil: no cache reads preferences
}

// Invalidator announces a change of a collection's preferences to the
// caches that read them (invalidate.Bus): Publish inside the change's
// transaction, Committed after it.
type Invalidator interface {
	Publish(ctx context.Context, tx *gorm.DB, k invalidate.Key) error
	Committed(k invalidate.Key)
}

// WithInvalidator has every change announce itself on inv, so that the
// planning rule's record of collections without preferences
// (Rule.WithAbsent) learns of the first one.
func (s *Service) WithInvalidator(inv Invalidator) *Service {
	s.inv = inv
	return s
}

// New returns the service on db, recording every change with w.
func New(db *gorm.DB, w *outbox.Writer, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{db: db, outbox: w, now: now}
}

// Get returns the preferences of recipient key in collectionID: an empty
// document (everything opted in) for a recipient who never set any.
func (s *Service) Get(ctx context.Context, _ auth.Principal, collectionID int64, key string) (Document, error) {
	key = Key(key)
	if err := validateKey(key); err != nil {
		return Document{}, err
	}
	if err := s.collectionExists(ctx, s.db, collectionID); err != nil {
		return Document{}, err
	}
	d, _, _, err := s.read(ctx, s.db, collectionID, key)
	return d, err
}

// Put replaces the recipient's preferences with d.
func (s *Service) Put(ctx context.Context, p auth.Principal, collectionID int64, key string, d Document) (Document, error) {
	d.normalize()
	if err := d.validate(); err != nil {
		return Document{}, err
	}
	return s.change(ctx, p, collectionID, key, SourceAPI, func(Document) (Document, error) { return d, nil })
}

// Patch merges patch, an RFC 7386 JSON merge patch, into the recipient's
// preferences: {"channels": {"sms": false}} opts out of SMS and leaves the
// rest; null removes an entry ({"channels": {"sms": null}} opts back in).
func (s *Service) Patch(ctx context.Context, p auth.Principal, collectionID int64, key string, patch json.RawMessage) (Document, error) {
	var pv any
	if err := json.Unmarshal(patch, &pv); err != nil {
		return Document{}, apperr.Invalid("the merge patch is malformed", apperr.Detail{Field: "body", Reason: apperr.Truncate(err.Error(), 300)})
	}
	if _, ok := pv.(map[string]any); !ok {
		return Document{}, apperr.Invalid("the merge patch must be a JSON object", apperr.Detail{Field: "body", Reason: "must be an object"})
	}
	return s.change(ctx, p, collectionID, key, SourceAPI, func(cur Document) (Document, error) {
		raw, err := json.Marshal(cur)
		if err != nil {
			return Document{}, err
		}
		var cv any
		if err := json.Unmarshal(raw, &cv); err != nil {
			return Document{}, err
		}
		merged, err := json.Marshal(mergePatch(cv, pv))
		if err != nil {
			return Document{}, err
		}
		d, err := decode(merged)
		if err != nil {
			return Document{}, err
		}
		return d, d.validate()
	})
}

// OptOut records one opt-out for the recipient (the one-click unsubscribe):
// of event when it is not "", else of channel.
func (s *Service) OptOut(ctx context.Context, collectionID int64, key, event, channel string) (Document, error) {
	p := auth.Principal{UserID: "unsubscribe", Channel: SourceUnsubscribe}
	return s.change(ctx, p, collectionID, key, SourceUnsubscribe, func(d Document) (Document, error) {
		off := false
		if event != "" {
			e := d.Events[event]
			e.Enabled = &off
			d.Events[event] = e
		} else {
			d.Channels[channel] = false
		}
		return d, nil
	})
}

// maxConflicts is how often a change is recomputed when another change to
// the same recipient committed in between.
const maxConflicts = 5

// errConflict is a change that lost a race on the row's version.
var errConflict = errors.New("preferences: concurrent change")

// change applies fn to the recipient's current document and stores the
// result with its envelope, in one transaction. Concurrent changes to one
// recipient are serialized on the row's version: the loser recomputes from
// the winner's document, so a PATCH never drops another's keys.
func (s *Service) change(ctx context.Context, p auth.Principal, collectionID int64, key, source string, fn func(Document) (Document, error)) (Document, error) {
	key = Key(key)
	if err := validateKey(key); err != nil {
		return Document{}, err
	}
	for range maxConflicts {
		var out Document
		err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			if err := s.collectionExists(ctx, tx, collectionID); err != nil {
				return err
			}
			if store.IsPostgres(tx) {
				// Serialize the writers of one recipient on its row: create
				// it when absent (a racing creator waits on the conflict),
				// then lock it for the read-modify-write. SQLite has one
				// writer at a time; the version check below covers it.
				if err := s.lock(ctx, tx, collectionID, key); err != nil {
					return err
				}
			}
			cur, version, found, err := s.read(ctx, tx, collectionID, key)
			if err != nil {
				return err
			}
			if out, err = fn(cur); err != nil {
				return err
			}
			out.normalize()
			doc, err := json.Marshal(out)
			if err != nil {
				return fmt.Errorf("preferences: encode: %w", err)
			}
			now := s.now().UnixMilli()
			if !found {
				res := tx.WithContext(ctx).Clauses(clause.OnConflict{DoNothing: true}).Create(&row{
					CollectionID: collectionID, RecipientKey: key, Document: string(doc), Version: 1,
					UpdatedBy: p.UserID, CreatedTime: now, UpdatedTime: now,
				})
				if res.Error != nil {
					return fmt.Errorf("preferences: insert: %w", res.Error)
				}
				if res.RowsAffected == 0 {
					return errConflict
				}
			} else {
				res := tx.WithContext(ctx).Model(&row{}).
					Where("collection_id = ? AND recipient_key = ? AND version = ?", collectionID, key, version).
					Updates(map[string]any{"document": string(doc), "version": version + 1, "updated_by": p.UserID, "updated_time": now})
				if res.Error != nil {
					return fmt.Errorf("preferences: update: %w", res.Error)
				}
				if res.RowsAffected == 0 {
					return errConflict
				}
			}
			if s.inv != nil {
				if err := s.inv.Publish(ctx, tx, invalidate.Preferences(collectionID)); err != nil {
					return err
				}
			}
			return s.outbox.Record(ctx, tx, outbox.Change{
				DetailType: outbox.PreferencesUpdate, EntityID: key, CollectionID: collectionID, Actor: p,
				Payload: map[string]any{"preferences": Changed{CollectionID: collectionID, RecipientID: key, Preferences: out, Source: source, UpdatedTime: now}},
				Href:    Href(collectionID, key),
			})
		})
		if errors.Is(err, errConflict) {
			continue
		}
		if err != nil {
			if _, ok := apperr.As(err); ok {
				return Document{}, err
			}
			return Document{}, fmt.Errorf("preferences: transaction: %w", err)
		}
		if s.inv != nil {
			// Before the caller hears of it: a send it makes next, on this
			// instance, reads the preference it just stored.
			s.inv.Committed(invalidate.Preferences(collectionID))
		}
		s.outbox.Committed()
		return out, nil
	}
	return Document{}, apperr.New(apperr.FailedPrecondition, "the preferences of %q kept changing concurrently; try again", key)
}

// lock creates the recipient's row when it has none (version 0: no
// document yet) and locks it until tx ends.
func (s *Service) lock(ctx context.Context, tx *gorm.DB, collectionID int64, key string) error {
	now := s.now().UnixMilli()
	err := tx.WithContext(ctx).Clauses(clause.OnConflict{DoNothing: true}).Create(&row{
		CollectionID: collectionID, RecipientKey: key, Document: `{"channels":{},"events":{}}`, Version: 0,
		CreatedTime: now, UpdatedTime: now,
	}).Error
	if err != nil {
		return fmt.Errorf("preferences: create for update: %w", err)
	}
	var rows []row
	if err := tx.WithContext(ctx).Clauses(clause.Locking{Strength: "UPDATE"}).
		Where("collection_id = ? AND recipient_key = ?", collectionID, key).Find(&rows).Error; err != nil {
		return fmt.Errorf("preferences: lock: %w", err)
	}
	return nil
}

// Href is the API path of a recipient's preferences.
func Href(collectionID int64, key string) string {
	return fmt.Sprintf("/v1/collections/%d/recipients/%s/preferences", collectionID, url.PathEscape(key))
}

// read returns the recipient's document, its row's version and whether it
// has a row.
func (s *Service) read(ctx context.Context, db *gorm.DB, collectionID int64, key string) (d Document, version int64, found bool, err error) {
	var rows []row
	if err := db.WithContext(ctx).Where("collection_id = ? AND recipient_key = ?", collectionID, key).Limit(1).Find(&rows).Error; err != nil {
		return Document{}, 0, false, fmt.Errorf("preferences: read: %w", err)
	}
	if len(rows) == 0 {
		d.normalize()
		return d, 0, false, nil
	}
	if d, err = decode([]byte(rows[0].Document)); err != nil {
		return Document{}, 0, false, fmt.Errorf("preferences: stored document of %q is unreadable: %v", key, err)
	}
	return d, rows[0].Version, true, nil
}

func (s *Service) collectionExists(ctx context.Context, db *gorm.DB, collectionID int64) error {
	var n int64
	if err := db.WithContext(ctx).Table("collections").Where("id = ?", collectionID).Count(&n).Error; err != nil {
		return fmt.Errorf("preferences: find collection %d: %w", collectionID, err)
	}
	if n == 0 {
		return apperr.New(apperr.NotFound, "collection %d does not exist", collectionID)
	}
	return nil
}
