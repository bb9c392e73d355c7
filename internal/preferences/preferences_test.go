package preferences_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/planning"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/preferences"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

var sender = auth.Principal{UserID: "backend", Roles: []string{auth.RoleSender}, Channel: "API"}

func off() *bool { f := false; return &f }

// Match names the most specific preference that opts out, in the words a
// skipped delivery shows.
func TestMatchNamesThePreference(t *testing.T) {
	t.Parallel()
	d := preferences.Document{
		Channels: map[string]bool{"email": true, "sms": false},
		Events: map[string]preferences.Event{
			"USER_INVITEUSER": {Enabled: off()},
			"ORDER_SHIPPED":   {Channels: map[string]bool{"push": false, "email": true}},
		},
	}
	for _, tc := range []struct{ event, channel, want string }{
		{"USER_INVITEUSER", "email", "events.USER_INVITEUSER.enabled=false"},
		{"USER_INVITEUSER", "sms", "events.USER_INVITEUSER.enabled=false"},
		{"ORDER_SHIPPED", "push", "events.ORDER_SHIPPED.channels.push=false"},
		{"ORDER_SHIPPED", "email", ""},
		{"ORDER_SHIPPED", "sms", "channels.sms=false"},
		{"OTHER", "sms", "channels.sms=false"},
		{"OTHER", "email", ""},
		{"OTHER", "push", ""},
	} {
		require.Equal(t, tc.want, d.Match(tc.event, tc.channel), "%s on %s", tc.event, tc.channel)
	}
}

// countPreferenceReads counts the statements that read the preferences
// table on db.
func countPreferenceReads(t *testing.T, db *gorm.DB) *atomic.Int64 {
	var n atomic.Int64
	require.NoError(t, db.Callback().Query().After("gorm:query").Register("test:count_preferences", func(tx *gorm.DB) {
		if tx.Statement.Table == "preferences" {
			n.Add(1)
		}
	}))
	return &n
}

func newCollection(t *testing.T, db *gorm.DB) int64 {
	t.Helper()
	var id int64
	now := time.Now().UnixMilli()
	require.NoError(t, db.Raw(`INSERT INTO collections (name, status, created_time, updated_time) VALUES (?, 'ACTIVE', ?, ?) RETURNING id`,
		testdb.Name("c"), now, now).Scan(&id).Error)
	return id
}

// The planning rule reads the preferences of a whole batch in one query,
// skips what a preference opts out of with the preference as the detail
// (keyed by id, and by address for recipients with and without an id), and
// lets a required event through every opt-out.
func TestRuleSkipsOptedOutOncePerBatchAndRequiredBypasses(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		cid := newCollection(t, db)
		svc := preferences.New(db, outbox.NewWriter(nil, nil), nil)
		put := func(key string, d preferences.Document) {
			_, err := svc.Put(ctx, sender, cid, key, d)
			require.NoError(t, err)
		}
		put("user-1", preferences.Document{Events: map[string]preferences.Event{"USER_INVITEUSER": {Enabled: off()}}})
		put("Bob@Example.test", preferences.Document{Channels: map[string]bool{"email": false}})
		put("user-3", preferences.Document{Events: map[string]preferences.Event{"USER_INVITEUSER": {Channels: map[string]bool{"sms": false}}}})
		put("+14155550104", preferences.Document{Channels: map[string]bool{"sms": false}})

		rcs := []dispatch.Recipient{
			{ID: "user-1", Email: "ann@example.test", Phone: "+14155550101"},       // out of the event
			{ID: "user-2", Email: "bob@example.test", Phone: "+14155550102"},       // out of email by address
			{ID: "user-3", Email: "cy@example.test", Phone: "+14155550103"},        // out of the event on sms
			{Email: "dee@example.test", Phone: "+14155550104"},                     // no id: out of sms by address
			{ID: "user-5", Email: "eve@example.test", Phone: "+14155550105"},       // opted in
			{ID: "user-6", Tos: []dispatch.Address{{Email: "BOB@example.test"}}},   // a To address counts too
			{ID: "+14155550104", Email: "fay@example.test", Phone: "+14155550199"}, // the id key, whatever it looks like
		}
		ins := []planning.Input{
			{CollectionID: cid, Notification: dispatch.Notification{Name: "USER_INVITEUSER", Recipients: rcs}},
			{CollectionID: cid, Notification: dispatch.Notification{Name: "ORDER_SHIPPED", Recipients: rcs[:1]}},
		}
		reads := countPreferenceReads(t, db)
		p := planning.New(planning.Static(planning.Condition{}), preferences.NewRule(db))
		b, err := p.ForBatch(ctx, ins)
		require.NoError(t, err)
		require.EqualValues(t, 1, reads.Load(), "one query for the whole batch")

		email := actions.Action{ID: 1, ConfigName: actions.ConfigEmail}
		sms := actions.Action{ID: 2, ConfigName: actions.ConfigSMS}
		rule := actions.Rule{EventID: 9, Actions: []actions.Action{email, sms}}
		_, ds := b.Plan(ins[0], planning.Resolution{Rule: rule, Found: true}, 1000)
		require.EqualValues(t, 1, reads.Load(), "planning reads nothing more")
		got := map[string]string{}
		for _, d := range ds {
			if d.ReasonDetail != "" {
				require.Equal(t, dispatch.ReasonOptedOut, d.Reason, "recipient %d %s", d.RecipientIndex, d.Channel)
				require.Equal(t, dispatch.StatusSkipped, d.Status)
			}
			got[d.Recipient.Email+d.Recipient.ID+" "+d.Channel] = d.ReasonDetail
		}
		require.Equal(t, map[string]string{
			"ann@example.test" + "user-1 email":  "events.USER_INVITEUSER.enabled=false",
			"ann@example.test" + "user-1 sms":    "events.USER_INVITEUSER.enabled=false",
			"bob@example.test" + "user-2 email":  "channels.email=false",
			"bob@example.test" + "user-2 sms":    "",
			"cy@example.test" + "user-3 email":   "",
			"cy@example.test" + "user-3 sms":     "events.USER_INVITEUSER.channels.sms=false",
			"dee@example.test sms":               "channels.sms=false",
			"dee@example.test email":             "",
			"eve@example.test" + "user-5 email":  "",
			"eve@example.test" + "user-5 sms":    "",
			"user-6 email":                       "channels.email=false",
			"user-6 sms":                         "", // no phone: skipped for that, not by a preference
			"fay@example.test+14155550104 email": "",
			"fay@example.test+14155550104 sms":   "channels.sms=false",
		}, got)

		// Another event: the event opt-out of user-1 does not apply.
		_, ds = b.Plan(ins[1], planning.Resolution{Rule: rule, Found: true}, 1000)
		for _, d := range ds {
			require.Equal(t, dispatch.StatusPending, d.Status, d.Reason)
		}

		// A required event: no opt-out applies.
		rule.Required = true
		_, ds = b.Plan(ins[0], planning.Resolution{Rule: rule, Found: true}, 1000)
		for _, d := range ds {
			require.NotEqual(t, dispatch.ReasonOptedOut, d.Reason, "recipient %d %s", d.RecipientIndex, d.Channel)
		}

		// A batch without any preference lookup to make costs no query.
		_, err = p.ForBatch(ctx, []planning.Input{{CollectionID: cid}})
		require.NoError(t, err)
		require.EqualValues(t, 1, reads.Load())
	})
}

// The planning read is one statement text whatever the number of
// collections and keys of the batch, so it is prepared once, not once per
// count of keys as an IN (?, ?, …) list made it.
func TestRuleReadIsOneStatementTextForEveryBatch(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		cid := newCollection(t, db)
		svc := preferences.New(db, outbox.NewWriter(nil, nil), nil)
		_, err := svc.Put(ctx, sender, cid, "user-3", preferences.Document{Channels: map[string]bool{"email": false}})
		require.NoError(t, err)
		var mu sync.Mutex
		texts := map[string]bool{}
		require.NoError(t, db.Callback().Query().After("gorm:query").Register("test:preference_texts", func(tx *gorm.DB) {
			if tx.Statement.Table == "preferences" {
				mu.Lock()
				texts[tx.Statement.SQL.String()] = true
				mu.Unlock()
			}
		}))
		rule := preferences.NewRule(db)
		for _, n := range []int{1, 2, 7} {
			var rcs []dispatch.Recipient
			for i := range n {
				rcs = append(rcs, dispatch.Recipient{ID: fmt.Sprintf("user-%d", i+1), Email: fmt.Sprintf("u%d@example.test", i+1)})
			}
			ins := []planning.Input{{CollectionID: cid, Notification: dispatch.Notification{Name: "USER_INVITEUSER", Recipients: rcs}}}
			if n == 7 {
				ins = append(ins, planning.Input{CollectionID: cid + 1000, Notification: dispatch.Notification{Name: "USER_INVITEUSER", Recipients: rcs[:1]}})
			}
			b, err := rule.ForBatch(ctx, ins)
			require.NoError(t, err)
			// And it still finds what it should: user-3's opt-out from email.
			skip, _ := b.Skip(planning.Pair{In: &ins[0], Event: &actions.Rule{}, Action: &actions.Action{ConfigName: actions.ConfigEmail},
				Recipient: &rcs[min(2, n-1)]})
			require.Equal(t, n >= 3, skip == dispatch.ReasonOptedOut, "batch of %d", n)
		}
		require.Len(t, texts, 1, "one statement text for batches of 1, 2 and 7 keys: %v", texts)
	})
}

// A read failure is the batch's outage, never an opt-out nor a pass.
func TestRuleReadFailureFailsTheBatch(t *testing.T) {
	t.Parallel()
	db, _ := testdb.SQLite(t)
	fault := errors.New("disk I/O error")
	testdb.InjectError(t, db, func(*gorm.Statement) error { return fault })
	_, err := preferences.NewRule(db).ForBatch(context.Background(), []planning.Input{{CollectionID: 1,
		Notification: dispatch.Notification{Recipients: []dispatch.Recipient{{ID: "u"}}}}})
	require.Error(t, err)
}

// PATCH merges as RFC 7386 says (null removes), validates the result, and
// concurrent PATCHes to one recipient keep each other's keys; every change
// records one envelope.
func TestPatchMergesAndSerializes(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		cid := newCollection(t, db)
		svc := preferences.New(db, outbox.NewWriter(nil, nil), nil)
		_, err := svc.Put(ctx, sender, cid, "u1", preferences.Document{Channels: map[string]bool{"sms": false, "push": false},
			Events: map[string]preferences.Event{"A": {Enabled: off()}, "B": {Channels: map[string]bool{"email": false}}}})
		require.NoError(t, err)
		d, err := svc.Patch(ctx, sender, cid, "u1", []byte(`{"channels": {"sms": null, "email": false}, "events": {"A": null, "B": {"enabled": false}}}`))
		require.NoError(t, err)
		require.Equal(t, preferences.Document{Channels: map[string]bool{"push": false, "email": false},
			Events: map[string]preferences.Event{"B": {Enabled: off(), Channels: map[string]bool{"email": false}}}}, d)

		_, err = svc.Patch(ctx, sender, cid, "u1", []byte(`{"events": {"B": {"channels": {"fax": false}}}}`))
		e, ok := apperr.As(err)
		require.True(t, ok, "%v", err)
		require.Equal(t, apperr.InvalidArgument, e.Kind)
		require.Equal(t, "events.B.channels.fax", e.Details[0].Field)

		// Concurrent PATCHes of distinct keys: none is lost.
		const n = 8
		errs := make(chan error, n)
		for i := range n {
			go func() {
				_, err := svc.Patch(ctx, sender, cid, "u2", []byte(`{"events": {"E`+strings.Repeat("x", i)+`": {"enabled": false}}}`))
				errs <- err
			}()
		}
		for range n {
			require.NoError(t, <-errs)
		}
		d, err = svc.Get(ctx, sender, cid, "u2")
		require.NoError(t, err)
		require.Len(t, d.Events, n)

		var envelopes int64
		require.NoError(t, db.Raw(`SELECT COUNT(*) FROM outbox WHERE detail_type = ?`, outbox.PreferencesUpdate).Scan(&envelopes).Error)
		require.EqualValues(t, 2+n, envelopes, "one envelope per change, none for the refused patch")
	})
}

// Unsubscribe tokens are signed and expire; the previous key still
// verifies (rotation); a tampered, foreign or expired token is refused; and
// a bearer-token verifier never takes one for a login.
func TestLinksAreSignedExpiringAndRotate(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	keyA, keyB := strings.Repeat("a", 32), strings.Repeat("b", 32)
	cfg := config.Unsubscribe{BaseURL: "https://mail.example.com/", TTL: time.Hour, SigningKey: keyA}
	linksA := preferences.NewLinks(cfg, config.Auth{}, "127.0.0.1:8080", clock)
	target := preferences.Target{CollectionID: 7, RecipientKey: "user-1", EventID: 9, Channel: "email"}
	tok, err := linksA.Token(target)
	require.NoError(t, err)
	require.Equal(t, "https://mail.example.com/unsubscribe/"+tok, linksA.URL(tok))
	got, err := linksA.Parse(tok)
	require.NoError(t, err)
	require.Equal(t, target, got)

	// Rotation: B signs, A is still accepted.
	rotated := preferences.NewLinks(config.Unsubscribe{TTL: time.Hour, SigningKey: keyB, PreviousSigningKey: keyA}, config.Auth{}, "127.0.0.1:8080", clock)
	_, err = rotated.Parse(tok)
	require.NoError(t, err)
	onlyB := preferences.NewLinks(config.Unsubscribe{TTL: time.Hour, SigningKey: keyB}, config.Auth{}, "127.0.0.1:8080", clock)
	_, err = onlyB.Parse(tok)
	require.ErrorIs(t, err, preferences.ErrBadLink)

	// Tampered: another recipient in the payload, same signature.
	parts := strings.Split(tok, ".")
	other, err := linksA.Token(preferences.Target{CollectionID: 7, RecipientKey: "user-2", EventID: 9})
	require.NoError(t, err)
	_, err = linksA.Parse(parts[0] + "." + strings.Split(other, ".")[1] + "." + parts[2])
	require.ErrorIs(t, err, preferences.ErrBadLink)
	e, ok := apperr.As(err)
	require.True(t, ok)
	require.Equal(t, apperr.InvalidArgument, e.Kind)

	// Expired.
	now = now.Add(time.Hour + time.Second)
	_, err = linksA.Parse(tok)
	require.ErrorIs(t, err, preferences.ErrBadLink)

	// Derived from the JWT secret by default, and never a bearer token.
	a := config.Auth{HMACSecret: strings.Repeat("s", 32)}
	derived := preferences.NewLinks(config.Unsubscribe{TTL: time.Hour}, a, "127.0.0.1:8080", time.Now)
	tok, err = derived.Token(target)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(derived.URL(tok), "http://127.0.0.1:8080/unsubscribe/"))
	for addr, base := range map[string]string{":8080": "http://127.0.0.1:8080", "0.0.0.0:9000": "http://127.0.0.1:9000", "[::]:80": "http://127.0.0.1:80", "10.0.0.5:8080": "http://10.0.0.5:8080"} {
		l := preferences.NewLinks(config.Unsubscribe{TTL: time.Hour}, a, addr, time.Now)
		require.Equal(t, base+"/unsubscribe/x", l.URL("x"), addr)
	}
	v, err := auth.NewVerifier(context.Background(), a)
	require.NoError(t, err)
	_, err = v.Verify(tok)
	require.ErrorIs(t, err, auth.ErrInvalidToken)
	same := preferences.NewLinks(config.Unsubscribe{TTL: time.Hour, SigningKey: a.HMACSecret}, a, "x:1", time.Now)
	tok, err = same.Token(target)
	require.NoError(t, err)
	_, err = v.Verify(tok)
	require.ErrorIs(t, err, auth.ErrInvalidToken, "no sub: not a login even under the same key")
}
