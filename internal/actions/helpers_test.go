package actions_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/store"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// collectionRow and eventRow insert the rows actions hang from; this package
// does not own them, so the tests write them directly.
type collectionRow struct {
	ID          int64 `gorm:"primaryKey"`
	Name        string
	Status      string
	CreatedTime int64
	UpdatedTime int64
}

func (collectionRow) TableName() string { return "collections" }

type eventRow struct {
	ID           int64 `gorm:"primaryKey"`
	CollectionID int64
	Name         string
	Status       string
	CreatedTime  int64
	UpdatedTime  int64
}

func (eventRow) TableName() string { return "events" }

// bundle is what every service test needs.
type bundle struct {
	db      *gorm.DB
	svc     *actions.Service
	writer  *countingWriter
	admin   auth.Principal
	now     time.Time
	ctx     context.Context
	coll    int64 // an ACTIVE collection
	event   int64 // an ACTIVE event of coll
	event2  int64 // another ACTIVE event of coll
	other   int64 // another collection
	otherEv int64 // an event of other
}

// countingWriter is the real outbox.Writer, counting Committed calls; fail
// makes Record fail, as a broken outbox insert would.
type countingWriter struct {
	*outbox.Writer
	committed atomic.Int64
	fail      atomic.Bool
}

func (w *countingWriter) Record(ctx context.Context, tx *gorm.DB, c outbox.Change) error {
	if w.fail.Load() {
		return errors.New("outbox is broken")
	}
	return w.Writer.Record(ctx, tx, c)
}

func (w *countingWriter) Committed() { w.committed.Add(1) }

func setup(t *testing.T, db *gorm.DB) *bundle {
	t.Helper()
	now := time.UnixMilli(1709786405337)
	w := &countingWriter{Writer: outbox.NewWriter(func() time.Time { return now }, nil)}
	b := &bundle{
		db:     db,
		writer: w,
		svc:    actions.New(db, w, func() time.Time { return now }),
		admin:  auth.Principal{UserID: "1", Roles: []string{auth.RoleSuperAdmin}, Channel: "CSR"},
		now:    now,
		ctx:    context.Background(),
	}
	b.coll = b.collection(t, "c", actions.StatusActive)
	b.event = b.eventIn(t, b.coll, "USER_INVITEUSER", actions.StatusActive)
	b.event2 = b.eventIn(t, b.coll, "USER_RESET", actions.StatusActive)
	b.other = b.collection(t, "other", actions.StatusActive)
	b.otherEv = b.eventIn(t, b.other, "USER_INVITEUSER", actions.StatusActive)
	return b
}

func (b *bundle) collection(t *testing.T, name, status string) int64 {
	t.Helper()
	r := collectionRow{Name: testdb.Name(name), Status: status, CreatedTime: 1, UpdatedTime: 1}
	require.NoError(t, b.db.Create(&r).Error)
	return r.ID
}

func (b *bundle) eventIn(t *testing.T, collectionID int64, name, status string) int64 {
	t.Helper()
	r := eventRow{CollectionID: collectionID, Name: name, Status: status, CreatedTime: 1, UpdatedTime: 1}
	require.NoError(t, b.db.Create(&r).Error)
	return r.ID
}

// email is a valid email action input on event.
func email(event int64, name string) actions.Input {
	return actions.Input{
		Name:        name,
		Description: "Used to Send Reset Email",
		EventID:     event,
		ConfigName:  actions.ConfigEmail,
		Template:    "d-1257a7b8169f4d84aa3393cb4437cbcf",
	}
}

func sms(event int64, name string) actions.Input {
	return actions.Input{Name: name, EventID: event, ConfigName: actions.ConfigSMS, Config: actions.Config{Content: actions.Content{Body: "Hi {{FNAME}}"}}}
}

func push(event int64, name string) actions.Input {
	return actions.Input{Name: name, EventID: event, ConfigName: actions.ConfigPush, Config: actions.Config{Content: actions.Content{Title: "Hi"}}}
}

func (b *bundle) create(t *testing.T, in actions.Input) actions.Action {
	t.Helper()
	a, err := b.svc.Create(b.ctx, b.admin, b.coll, in)
	require.NoError(t, err)
	return a
}

// outboxRows returns the outbox rows in id order.
func outboxRows(t *testing.T, db *gorm.DB) []outbox.Row {
	t.Helper()
	var rows []outbox.Row
	require.NoError(t, db.Order("id").Find(&rows).Error)
	return rows
}

func detailOf(t *testing.T, r outbox.Row) outbox.Detail {
	t.Helper()
	var d outbox.Detail
	require.NoError(t, json.Unmarshal([]byte(r.Detail), &d))
	return d
}

// requireKind asserts err is an apperr of kind k and returns it.
func requireKind(t *testing.T, err error, k apperr.Kind) *apperr.Error {
	t.Helper()
	require.Error(t, err)
	require.Equal(t, k, apperr.KindOf(err), "error: %v", err)
	e, _ := apperr.As(err)
	return e
}

// fields returns an INVALID_ARGUMENT error's details as field → reason.
func fields(t *testing.T, err error) map[string]string {
	t.Helper()
	e := requireKind(t, err, apperr.InvalidArgument)
	out := map[string]string{}
	for _, d := range e.Details {
		out[d.Field] = d.Reason
	}
	return out
}

// gateWrites holds each write of the actions table (op "create" or
// "update") until n writers are waiting or a short timeout passes, so
// concurrent transactions reach their write together: without the locks and
// compare-and-write under test they would all pass their checks. Where the
// code under test serialises them, each waits out the timeout alone.
func gateWrites(t *testing.T, db *gorm.DB, op string, n int) {
	t.Helper()
	if !store.IsPostgres(db) {
		return // SQLite runs one write transaction at a time: there is no race to widen
	}
	var (
		arrived atomic.Int32
		all     = make(chan struct{})
	)
	hook := func(tx *gorm.DB) {
		if tx.Statement.Table != "actions" {
			return
		}
		if arrived.Add(1) == int32(n) {
			close(all)
		}
		select {
		case <-all:
		case <-time.After(300 * time.Millisecond):
		}
	}
	name := "gate_" + testdb.Name("")
	switch op {
	case "create":
		require.NoError(t, db.Callback().Create().Before("gorm:create").Register(name, hook))
		t.Cleanup(func() { _ = db.Callback().Create().Remove(name) })
	case "update":
		require.NoError(t, db.Callback().Update().Before("gorm:update").Register(name, hook))
		t.Cleanup(func() { _ = db.Callback().Update().Remove(name) })
	}
}
