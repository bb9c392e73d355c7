package actions_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

func TestRulesResolve(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		rules := actions.NewRules(db)

		// USER_INVITEUSER: two ACTIVE actions and an INACTIVE one between them.
		in := email(b.event, "mail")
		in.Config.Locales = map[string]actions.Content{"fr": {Subject: "Bonjour"}}
		mail := b.create(t, in)
		off := sms(b.event, "off")
		off.Status = actions.StatusInactive
		b.create(t, off)
		pushed := b.create(t, push(b.event, "push"))
		// The same name in another collection must not leak in.
		_, err := b.svc.Create(b.ctx, b.admin, b.other, sms(b.otherEv, "elsewhere"))
		require.NoError(t, err)

		rule, found, err := rules.Resolve(b.ctx, b.coll, "USER_INVITEUSER")
		require.NoError(t, err)
		require.True(t, found)
		require.Equal(t, b.event, rule.EventID)
		wantMail, err := b.svc.Get(b.ctx, b.admin, b.coll, mail.ID)
		require.NoError(t, err)
		wantPush, err := b.svc.Get(b.ctx, b.admin, b.coll, pushed.ID)
		require.NoError(t, err)
		require.Equal(t, []actions.Action{wantMail, wantPush}, rule.Actions, "ACTIVE actions only, in id order, every field")

		// An ACTIVE event with no actions, or only INACTIVE ones, is found with none.
		rule, found, err = rules.Resolve(b.ctx, b.coll, "USER_RESET")
		require.NoError(t, err)
		require.True(t, found)
		require.Equal(t, b.event2, rule.EventID)
		require.Empty(t, rule.Actions)
		b.create(t, off2(b.event2))
		rule, found, err = rules.Resolve(b.ctx, b.coll, "USER_RESET")
		require.NoError(t, err)
		require.True(t, found)
		require.Empty(t, rule.Actions)

		// An INACTIVE event is not found, even with ACTIVE actions.
		sleeping := b.eventIn(t, b.coll, "SLEEPING", actions.StatusInactive)
		b.create(t, email(sleeping, "never"))
		_, found, err = rules.Resolve(b.ctx, b.coll, "SLEEPING")
		require.NoError(t, err)
		require.False(t, found)

		// An unknown name is not found.
		_, found, err = rules.Resolve(b.ctx, b.coll, "NO_SUCH_EVENT")
		require.NoError(t, err)
		require.False(t, found)

		// Nothing in an INACTIVE collection is found.
		closed := b.collection(t, "closed", actions.StatusInactive)
		ev := b.eventIn(t, closed, "USER_INVITEUSER", actions.StatusActive)
		_, err = b.svc.Create(b.ctx, b.admin, closed, email(ev, "mail"))
		require.NoError(t, err)
		_, found, err = rules.Resolve(b.ctx, closed, "USER_INVITEUSER")
		require.NoError(t, err)
		require.False(t, found)

		// A missing collection is not found either.
		_, found, err = rules.Resolve(b.ctx, 987654, "USER_INVITEUSER")
		require.NoError(t, err)
		require.False(t, found)
	})
}

func off2(event int64) actions.Input {
	in := sms(event, "off too")
	in.Status = actions.StatusInactive
	return in
}

// A resolved rule carries its event's name, required flag and condition,
// and every condition compiled once, at load: planning only evaluates.
func TestRulesResolveCompilesConditions(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		require.NoError(t, db.Exec(`UPDATE events SET condition = ?, required = ? WHERE id = ?`, `event.name != ""`, true, b.event).Error)
		in := email(b.event, "mail")
		in.Config.Condition = `recipient.locale startsWith "fr"`
		b.create(t, in)
		b.create(t, sms(b.event, "plain"))

		rule, found, err := actions.NewRules(db).Resolve(b.ctx, b.coll, "USER_INVITEUSER")
		require.NoError(t, err)
		require.True(t, found)
		require.Equal(t, "USER_INVITEUSER", rule.EventName)
		require.True(t, rule.Required)
		require.Equal(t, `event.name != ""`, rule.Condition)
		require.NotEmpty(t, rule.CollectionName)
		ev := rule.CompiledCondition()
		require.NotNil(t, ev)
		require.NoError(t, ev.Err)
		require.Same(t, ev, rule.CompiledCondition(), "compiled at load, not per call")
		ac := rule.Actions[0].CompiledCondition()
		require.NoError(t, ac.Err)
		require.Equal(t, `recipient.locale startsWith "fr"`, ac.Program.String())
		require.Same(t, ac, rule.Actions[0].CompiledCondition())
		require.Nil(t, rule.Actions[1].CompiledCondition(), "no condition, nothing to run")
	})
}
