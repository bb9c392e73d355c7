package dispatch_test

import (
	"context"
	"regexp"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/dispatch/delivery"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// statements records every SQL statement db runs from now on.
type statements struct {
	mu  sync.Mutex
	sql []string
}

func recordStatements(t *testing.T, db *gorm.DB) *statements {
	t.Helper()
	s := &statements{}
	rec := func(tx *gorm.DB) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.sql = append(s.sql, tx.Statement.SQL.String())
	}
	cb := db.Callback()
	require.NoError(t, cb.Query().After("gorm:query").Register("test:record", rec))
	require.NoError(t, cb.Row().After("gorm:row").Register("test:record", rec))
	require.NoError(t, cb.Raw().After("gorm:raw").Register("test:record", rec))
	return s
}

func (s *statements) matching(re *regexp.Regexp) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, q := range s.sql {
		if re.MatchString(q) {
			out = append(out, q)
		}
	}
	return out
}

// The email sender is the action's config's, else its collection's
// default, else the service's, taken as a pair each time; and the
// collection default costs no query of its own.
func TestSenderPrecedence(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		own := emailAction()
		own.Name, own.Config.FromEmail, own.Config.FromName = "own sender", "action@example.com", "Action"
		inherits := emailAction()
		inherits.Name = "collection sender"
		nameOnly := emailAction()
		nameOnly.Name, nameOnly.Config.FromName = "name only", "Lonely Name" // no address: not a sender
		withDefault, ids := seedRule(t, db, "USER_INVITEUSER", own, inherits, nameOnly)
		require.NoError(t, db.Exec(`UPDATE collections SET default_from_email = ?, default_from_name = ? WHERE id = ?`,
			"collection@example.com", "Collection", withDefault).Error)
		noDefault, plain := seedRule(t, db, "USER_INVITEUSER", emailAction())

		sandbox := channels.NewSandbox(db, discard(), nil, channels.SandboxKeepAll())
		disp := delivery.New(db, map[string]channels.Channel{"email": sandbox}, testConfig(),
			delivery.Senders{Email: channels.Address{Email: "service@example.com", Name: "Service"}}, discard(), nil)
		in := intake.New(db, actions.NewRules(db), outbox.NewWriter(nil, nil), nil, disp)
		body := `{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [
		  {"email": "a@example.com", "macros": {"FNAME": "Ann"}}, {"email": "b@example.com", "macros": {"FNAME": "Bob"}}]}]}`
		_, err := in.Submit(ctx, []intake.Submission{
			{Source: intake.SourceQueue, Key: "m1", Request: request(t, withDefault, body)},
			{Source: intake.SourceQueue, Key: "m2", Request: request(t, noDefault, body)},
		})
		require.NoError(t, err)

		sql := recordStatements(t, db)
		n, err := disp.RunOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, 8, n, "four actions, two recipients each, in one batch")
		// One statement reads the batch's actions and their collections'
		// defaults together: no query per delivery, no second one per batch.
		reads := sql.matching(regexp.MustCompile(`\b(actions|collections)\b`))
		require.Len(t, reads, 1, "statements: %q", sql.sql)
		require.Regexp(t, `\bactions\b[\s\S]*\bJOIN collections\b`, reads[0])

		want := map[int64]channels.Address{
			ids[0]:   {Email: "action@example.com", Name: "Action"},
			ids[1]:   {Email: "collection@example.com", Name: "Collection"},
			ids[2]:   {Email: "collection@example.com", Name: "Collection"},
			plain[0]: {Email: "service@example.com", Name: "Service"},
		}
		got := map[int64][]channels.Address{}
		for _, m := range sandbox.Messages() {
			got[m.ActionID] = append(got[m.ActionID], m.From)
		}
		require.Len(t, got, len(want))
		for id, from := range want {
			require.Equal(t, []channels.Address{from, from}, got[id], "action %d", id)
		}
	})
}
