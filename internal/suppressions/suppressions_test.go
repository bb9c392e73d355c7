package suppressions_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/planning"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/suppressions"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

type testBundle struct {
	db    *gorm.DB
	svc   *suppressions.Service
	cid   int64
	added map[string]int
}

func setup(t *testing.T, db *gorm.DB) *testBundle {
	t.Helper()
	now := time.Now().UnixMilli()
	b := &testBundle{db: db, added: map[string]int{}}
	require.NoError(t, db.Raw(`INSERT INTO collections (name, status, created_time, updated_time) VALUES (?, 'ACTIVE', ?, ?) RETURNING id`,
		testdb.Name("c"), now, now).Scan(&b.cid).Error)
	b.svc = suppressions.New(db, outbox.NewWriter(time.Now, nil), nil)
	b.svc.OnAdded = func(src string, n int) { b.added[src] += n }
	return b
}

func (b *testBundle) envelopes(t *testing.T, detailType string) int64 {
	t.Helper()
	var n int64
	require.NoError(t, b.db.Table("outbox").Where("detail_type = ?", detailType).Count(&n).Error)
	return n
}

var admin = auth.Principal{UserID: "42", Roles: []string{auth.RoleAdmin}}

func TestCreateGetListDelete(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		ctx := context.Background()
		e, err := b.svc.Create(ctx, admin, b.cid, suppressions.Input{Address: " Jane@Example.COM ", Channel: "email", Reason: "asked by phone"})
		require.NoError(t, err)
		require.Equal(t, "jane@example.com", e.Address, "emails are stored lower-cased and trimmed")
		require.Equal(t, suppressions.SourceAPI, e.Source)
		require.Equal(t, "42", e.CreatedBy)
		require.NotZero(t, e.CreatedTime)
		require.EqualValues(t, 1, b.envelopes(t, outbox.SuppressionCreate))
		require.Equal(t, map[string]int{"api": 1}, b.added)

		// The same address on the same channel, in any case: 409, nothing added.
		_, err = b.svc.Create(ctx, admin, b.cid, suppressions.Input{Address: "JANE@example.com", Channel: "email"})
		require.Equal(t, apperr.AlreadyExists, apperr.KindOf(err), "%v", err)
		require.EqualValues(t, 1, b.envelopes(t, outbox.SuppressionCreate))

		// The same string on another channel is another entry.
		_, err = b.svc.Create(ctx, admin, b.cid, suppressions.Input{Address: "+14155550100", Channel: "sms"})
		require.NoError(t, err)
		_, err = b.svc.Create(ctx, admin, b.cid, suppressions.Input{Address: "+14155550100", Channel: "push"})
		require.NoError(t, err)

		got, err := b.svc.Get(ctx, admin, b.cid, "Jane@example.com", "")
		require.NoError(t, err)
		require.Len(t, got, 1)
		require.Equal(t, e, got[0])
		got, err = b.svc.Get(ctx, admin, b.cid, "+14155550100", "")
		require.NoError(t, err)
		require.Len(t, got, 2, "one entry per channel")
		got, err = b.svc.Get(ctx, admin, b.cid, "+14155550100", "push")
		require.NoError(t, err)
		require.Len(t, got, 1)
		_, err = b.svc.Get(ctx, admin, b.cid, "nobody@example.com", "")
		require.Equal(t, apperr.NotFound, apperr.KindOf(err))

		page, err := b.svc.List(ctx, admin, b.cid, "", suppressions.Page{Limit: 2})
		require.NoError(t, err)
		require.Len(t, page, 2)
		rest, err := b.svc.List(ctx, admin, b.cid, "", suppressions.Page{Limit: 2, After: page[1].ID})
		require.NoError(t, err)
		require.Len(t, rest, 1)
		sms, err := b.svc.List(ctx, admin, b.cid, "sms", suppressions.Page{Limit: 10})
		require.NoError(t, err)
		require.Len(t, sms, 1)

		// Delete on one channel, then on every channel.
		d, err := b.svc.Delete(ctx, admin, b.cid, "+14155550100", "sms")
		require.NoError(t, err)
		require.Equal(t, suppressions.DeletedCode, d.ResponseCode)
		require.Len(t, d.Suppressions, 1)
		d, err = b.svc.Delete(ctx, admin, b.cid, "+14155550100", "")
		require.NoError(t, err)
		require.Len(t, d.Suppressions, 1)
		require.Equal(t, "push", d.Suppressions[0].Channel)
		_, err = b.svc.Delete(ctx, admin, b.cid, "+14155550100", "")
		require.Equal(t, apperr.NotFound, apperr.KindOf(err))
		require.EqualValues(t, 2, b.envelopes(t, outbox.SuppressionDelete))

		// A collection that does not exist.
		_, err = b.svc.Create(ctx, admin, b.cid+1000, suppressions.Input{Address: "a@example.com", Channel: "email"})
		require.Equal(t, apperr.NotFound, apperr.KindOf(err))
	})
}

func TestCreateValidates(t *testing.T) {
	t.Parallel()
	db, _ := testdb.SQLite(t)
	b := setup(t, db)
	long := make([]byte, suppressions.MaxReasonLen+1)
	for i := range long {
		long[i] = 'x'
	}
	for _, tc := range []struct {
		name   string
		in     suppressions.Input
		fields []string
	}{
		{"empty", suppressions.Input{}, []string{"channel", "address"}},
		{"unknown channel", suppressions.Input{Address: "a@example.com", Channel: "fax"}, []string{"channel"}},
		{"bad email", suppressions.Input{Address: "not an email", Channel: "email"}, []string{"address"}},
		{"display name", suppressions.Input{Address: "Jane <jane@example.com>", Channel: "email"}, []string{"address"}},
		{"national phone", suppressions.Input{Address: "409-685-4167", Channel: "sms"}, []string{"address"}},
		{"long reason", suppressions.Input{Address: "a@example.com", Channel: "email", Reason: string(long)}, []string{"reason"}},
		{"NUL", suppressions.Input{Address: "a\x00@example.com", Channel: "email", Reason: "\x00"}, []string{"address", "reason"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := b.svc.Create(context.Background(), admin, b.cid, tc.in)
			e, ok := apperr.As(err)
			require.True(t, ok, "%v", err)
			require.Equal(t, apperr.InvalidArgument, e.Kind)
			var fields []string
			for _, d := range e.Details {
				fields = append(fields, d.Field)
			}
			require.ElementsMatch(t, tc.fields, fields, "%v", e.Details)
		})
	}
	require.EqualValues(t, 0, b.envelopes(t, outbox.SuppressionCreate))
}

// Automatic entries are idempotent: a provider that reports the same
// address twice (or sends a batch again) adds it once, with one envelope.
func TestSuppressIsIdempotent(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		ctx := context.Background()
		entries := []suppressions.Entry{
			{CollectionID: b.cid, Channel: "email", Address: "Bob@Example.com", Reason: "bounce: 5.1.1", Source: suppressions.SourceSendGridBounce, Who: "sendgrid"},
			{CollectionID: b.cid, Channel: "email", Address: "bob@example.com", Reason: "again", Source: suppressions.SourceSendGridSpamReport, Who: "sendgrid"},
			{CollectionID: b.cid, Channel: "sms", Address: "+14155550100", Reason: "21610", Source: suppressions.SourceTwilioStop, Who: "twilio"},
			{CollectionID: b.cid + 1000, Channel: "sms", Address: "+14155550100", Source: suppressions.SourceTwilioStop, Who: "twilio"}, // no such collection
			{CollectionID: b.cid, Channel: "sms", Address: "", Source: suppressions.SourceTwilioStop},                                   // no address
		}
		n, err := b.svc.Suppress(ctx, entries)
		require.NoError(t, err)
		require.Equal(t, 2, n)
		n, err = b.svc.Suppress(ctx, entries)
		require.NoError(t, err)
		require.Zero(t, n)
		require.EqualValues(t, 2, b.envelopes(t, outbox.SuppressionCreate))
		require.Equal(t, map[string]int{"sendgrid_bounce": 1, "twilio_stop": 1}, b.added)

		got, err := b.svc.Get(ctx, admin, b.cid, "bob@example.com", "email")
		require.NoError(t, err)
		require.Equal(t, "bounce: 5.1.1", got[0].Reason, "the first report wins")
		require.Equal(t, "sendgrid", got[0].CreatedBy)
	})
}

// Find answers every key of a batch in one statement.
func TestFindIsOneQuery(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		ctx := context.Background()
		_, err := b.svc.Suppress(ctx, []suppressions.Entry{
			{CollectionID: b.cid, Channel: "email", Address: "bob@example.com", Source: suppressions.SourceSendGridBounce},
			{CollectionID: b.cid, Channel: "sms", Address: "+14155550100", Source: suppressions.SourceTwilioStop},
		})
		require.NoError(t, err)
		var statements int
		testdb.InjectError(t, db, func(*gorm.Statement) error { statements++; return nil })
		keys := []suppressions.Key{
			{CollectionID: b.cid, Channel: "email", Address: "BOB@example.com"},
			{CollectionID: b.cid, Channel: "sms", Address: "bob@example.com"},       // another channel
			{CollectionID: b.cid + 1, Channel: "email", Address: "bob@example.com"}, // another collection
			{CollectionID: b.cid, Channel: "sms", Address: "+14155550100"},
			{CollectionID: b.cid, Channel: "email", Address: "bob@example.com"},
			{CollectionID: b.cid, Channel: "push", Address: ""},
		}
		for range 200 {
			keys = append(keys, suppressions.Key{CollectionID: b.cid, Channel: "email", Address: testdb.Name("r") + "@example.com"})
		}
		found, err := b.svc.Find(ctx, keys)
		require.NoError(t, err)
		require.Equal(t, 1, statements)
		require.Len(t, found, len(keys))
		require.NotNil(t, found[0])
		require.Equal(t, suppressions.SourceSendGridBounce, found[0].Source)
		require.Nil(t, found[1])
		require.Nil(t, found[2])
		require.NotNil(t, found[3])
		require.NotNil(t, found[4])
		for _, f := range found[5:] {
			require.Nil(t, f)
		}
	})
}

// The providers classify what they report with the list's own source codes.
func TestProviderSourcesAreListSources(t *testing.T) {
	t.Parallel()
	for _, src := range []string{channels.SuppressSendGridBounce, channels.SuppressSendGridSpamReport, channels.SuppressTwilioStop} {
		require.Contains(t, suppressions.Sources(), src)
	}
}

// Dispatch carries every field across: what the workers and status
// webhooks report is what the planning rule finds, in the order asked.
func TestDispatchSuppressesWhatPlanningFinds(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		ctx := context.Background()
		d := suppressions.NewDispatch(b.svc)
		n, err := d.Suppress(ctx, []dispatch.Suppression{{CollectionID: b.cid, Channel: "email", Address: "Bob@Example.com",
			Reason: "bounce: 5.1.1", Source: suppressions.SourceSendGridBounce, Who: "sendgrid"}})
		require.NoError(t, err)
		require.Equal(t, 1, n)
		got, err := b.svc.Get(ctx, admin, b.cid, "bob@example.com", "email")
		require.NoError(t, err)
		require.Equal(t, "sendgrid", got[0].CreatedBy)

		hits, err := d.Suppressed(ctx, []planning.SuppressionKey{
			{CollectionID: b.cid, Channel: "sms", Address: "bob@example.com"},
			{CollectionID: b.cid, Channel: "email", Address: "BOB@example.com"},
		})
		require.NoError(t, err)
		require.Len(t, hits, 2)
		require.Nil(t, hits[0])
		require.Equal(t, &planning.SuppressionHit{Reason: "bounce: 5.1.1", Source: suppressions.SourceSendGridBounce,
			CreatedTime: got[0].CreatedTime}, hits[1])
	})
}
