package actions_test

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/macros"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

func ptr[T any](v T) *T { return &v }

func TestCRUDAndEnvelopes(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		a := b.create(t, email(b.event, "Send Reset Email"))
		require.Positive(t, a.ID)
		require.Equal(t, b.coll, a.CollectionID)
		require.Equal(t, actions.StatusActive, a.Status, "status defaults to ACTIVE")
		require.Equal(t, int64(1), a.Version)
		require.Equal(t, "1", a.CreatedBy)
		require.Equal(t, b.now.UnixMilli(), a.CreatedTime)
		require.Equal(t, a.CreatedTime, a.UpdatedTime)

		got, err := b.svc.Get(b.ctx, b.admin, b.coll, a.ID)
		require.NoError(t, err)
		require.Equal(t, a, got)

		// The create envelope: the catalogue's payload, field for field and in
		// its order, with config after template.
		rows := outboxRows(t, db)
		require.Len(t, rows, 1)
		require.Equal(t, outbox.ActionCreate, rows[0].DetailType)
		require.Equal(t, b.coll, rows[0].CollectionID)
		d := detailOf(t, rows[0])
		require.Equal(t, strconv.FormatInt(a.ID, 10), d.ID)
		require.Equal(t, strconv.FormatInt(b.coll, 10), d.CollectionID)
		require.Equal(t, "1", d.UserID)
		require.Equal(t, "CSR", d.Channel)
		require.Equal(t, []string{auth.RoleSuperAdmin}, d.Roles)
		want := fmt.Sprintf(`{"action":{"id":%d,"collectionId":%d,"name":"Send Reset Email","status":"ACTIVE",`+
			`"description":"Used to Send Reset Email","eventId":%d,"configName":"SendEmailConfig",`+
			`"template":"d-1257a7b8169f4d84aa3393cb4437cbcf","config":{},"updatedTime":1709786405337,"createdTime":1709786405337}}`,
			a.ID, b.coll, b.event)
		require.Equal(t, want, string(d.Payload))

		// Another user updates: updated_by changes, created_* do not.
		editor := auth.Principal{UserID: "2", Roles: []string{auth.RoleAdmin}, Collections: []int64{b.coll}, OnBehalfOf: 0}
		up, err := b.svc.Update(b.ctx, editor, b.coll, a.ID, actions.Patch{Status: ptr(actions.StatusInactive)}, 1)
		require.NoError(t, err)
		require.Equal(t, actions.StatusInactive, up.Status)
		require.Equal(t, int64(2), up.Version)
		require.Equal(t, "2", up.UpdatedBy)
		require.Equal(t, "1", up.CreatedBy)
		require.Equal(t, a.Name, up.Name)
		got, err = b.svc.Get(b.ctx, b.admin, b.coll, a.ID)
		require.NoError(t, err)
		require.Equal(t, up, got)

		rows = outboxRows(t, db)
		require.Len(t, rows, 2)
		require.Equal(t, outbox.ActionUpdate, rows[1].DetailType)
		d = detailOf(t, rows[1])
		require.Equal(t, "2", d.UserID)
		require.Contains(t, string(d.Payload), `"status":"INACTIVE"`)

		del, err := b.svc.Delete(b.ctx, b.admin, b.coll, a.ID, 2)
		require.NoError(t, err)
		require.Equal(t, actions.Deleted{ResponseCode: "NOACDEL0000", ResponseMessage: "Action is deleted successfully",
			TimeStamp: "1709786405337"}, del)
		_, err = b.svc.Get(b.ctx, b.admin, b.coll, a.ID)
		requireKind(t, err, apperr.NotFound)

		rows = outboxRows(t, db)
		require.Len(t, rows, 3)
		require.Equal(t, outbox.ActionDelete, rows[2].DetailType)
		d = detailOf(t, rows[2])
		require.Equal(t, strconv.FormatInt(a.ID, 10), d.ID)
		require.JSONEq(t, `{"responseCode":"NOACDEL0000","responseMessage":"Action is deleted successfully","timeStamp":"1709786405337"}`, string(d.Payload))
		require.Equal(t, int64(3), b.writer.committed.Load(), "Committed after every mutation")

		_, err = b.svc.Delete(b.ctx, b.admin, b.coll, a.ID, 0)
		requireKind(t, err, apperr.NotFound)
	})
}

func TestConfigRoundTrips(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		in := sms(b.event, "Text")
		in.Config.From = "+14155550100"
		in.Config.MissingMacro = actions.MissingKeep
		in.Config.Locales = map[string]actions.Content{"fr": {Body: "Salut"}, "fr_CA": {Body: "Allo"}}
		in.Config.Condition = `recipient.macros.TIER in ["gold", "platinum"]`
		in.Config.ConditionEvaluateAt = actions.EvaluateAtSend
		a := b.create(t, in)
		got, err := b.svc.Get(b.ctx, b.admin, b.coll, a.ID)
		require.NoError(t, err)
		require.Equal(t, in.Config, got.Config)
	})
}

func TestCreateValidation(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 129)
	cases := []struct {
		name   string
		mutate func(b *bundle, in *actions.Input)
		want   map[string]string // field → substring of the reason
	}{
		{"name required", func(_ *bundle, in *actions.Input) { in.Name = " " }, map[string]string{"name": "is required"}},
		{"name padded", func(_ *bundle, in *actions.Input) { in.Name = " x" }, map[string]string{"name": "whitespace"}},
		{"name too long", func(_ *bundle, in *actions.Input) { in.Name = long }, map[string]string{"name": "at most 128"}},
		{"description too long", func(_ *bundle, in *actions.Input) { in.Description = strings.Repeat("d", 1025) },
			map[string]string{"description": "at most 1024"}},
		{"status", func(_ *bundle, in *actions.Input) { in.Status = "DELETED" }, map[string]string{"status": "must be one of"}},
		{"eventId required", func(_ *bundle, in *actions.Input) { in.EventID = 0 }, map[string]string{"eventId": "is required"}},
		{"eventId of another collection", func(b *bundle, in *actions.Input) { in.EventID = b.otherEv },
			map[string]string{"eventId": "is not an event of collection"}},
		{"eventId unknown", func(_ *bundle, in *actions.Input) { in.EventID = 987654 },
			map[string]string{"eventId": "is not an event of collection"}},
		{"configName required", func(_ *bundle, in *actions.Input) { in.ConfigName = "" }, map[string]string{"configName": "is required"}},
		{"configName unknown", func(_ *bundle, in *actions.Input) { in.ConfigName = "SendFaxConfig" },
			map[string]string{"configName": "SendEmailConfig"}},
		{"sendgrid template short", func(_ *bundle, in *actions.Input) { in.Template = "d-1257a7b8" },
			map[string]string{"template": "32 lowercase hex"}},
		{"sendgrid template upper case", func(_ *bundle, in *actions.Input) { in.Template = "D-1257A7B8169F4D84AA3393CB4437CBCF" },
			map[string]string{"template": "32 lowercase hex"}},
		{"email without template or content", func(_ *bundle, in *actions.Input) { in.Template = "" },
			map[string]string{"config.subject": "is required", "config.html": "config.text"}},
		{"email subject without body", func(_ *bundle, in *actions.Input) {
			in.Template = ""
			in.Config.Subject = "Hi"
		}, map[string]string{"config.html": "config.text"}},
		{"sms with a template", func(_ *bundle, in *actions.Input) {
			in.ConfigName = actions.ConfigSMS
			in.Config.Body = "Hi"
		}, map[string]string{"template": "must be empty for SendSmsConfig"}},
		{"sms without body", func(_ *bundle, in *actions.Input) {
			in.ConfigName = actions.ConfigSMS
			in.Template = ""
		}, map[string]string{"config.body": "is required"}},
		{"push without title or body", func(_ *bundle, in *actions.Input) {
			in.ConfigName = actions.ConfigPush
			in.Template = ""
		}, map[string]string{"config.title": "config.body"}},
		{"missingMacro", func(_ *bundle, in *actions.Input) { in.Config.MissingMacro = "ignore" },
			map[string]string{"config.missingMacro": "must be one of"}},
		{"inDoubt", func(_ *bundle, in *actions.Input) { in.Config.InDoubt = "drop" },
			map[string]string{"config.inDoubt": "must be one of"}},
		{"from not E.164", func(_ *bundle, in *actions.Input) { in.Config.From = "415-555-0100" },
			map[string]string{"config.from": "E.164"}},
		{"messagingServiceSid", func(_ *bundle, in *actions.Input) { in.Config.MessagingServiceSID = "MG12" },
			map[string]string{"config.messagingServiceSid": "MG"}},
		{"fromEmail not an address", func(_ *bundle, in *actions.Input) { in.Config.FromEmail = "nobody" },
			map[string]string{"config.fromEmail": "email address"}},
		{"fromEmail with a name", func(_ *bundle, in *actions.Input) { in.Config.FromEmail = "Bob <bob@example.com>" },
			map[string]string{"config.fromEmail": "email address"}},
		{"locale keys", func(_ *bundle, in *actions.Input) {
			in.Config.Locales = map[string]actions.Content{"fr-CA": {}, "FR": {}, "fr_CA": {}, "fr": {}}
		}, map[string]string{"config.locales.fr-CA": "fr_CA", "config.locales.FR": "fr_CA"}},
		// A condition is compiled and type-checked when it is saved; the
		// error names its position.
		{"condition that does not parse", func(_ *bundle, in *actions.Input) { in.Config.Condition = `recipient.locale startsWith` },
			map[string]string{"config.condition": "line 1, column"}},
		{"condition on an unknown name", func(_ *bundle, in *actions.Input) { in.Config.Condition = `recipient.plan == "pro"` },
			map[string]string{"config.condition": "line 1, column 11: type Recipient has no field plan"}},
		{"condition that is not a bool", func(_ *bundle, in *actions.Input) { in.Config.Condition = `recipient.macros.PLAN` },
			map[string]string{"config.condition": "expected bool"}},
		// conditionEvaluateAt is plan (the default) or send, and send needs
		// a condition to evaluate.
		{"conditionEvaluateAt unknown", func(_ *bundle, in *actions.Input) {
			in.Config.Condition, in.Config.ConditionEvaluateAt = `recipient.locale == "fr"`, "later"
		}, map[string]string{"config.conditionEvaluateAt": `must be "plan" (the default) or "send"`}},
		{"conditionEvaluateAt send without a condition", func(_ *bundle, in *actions.Input) { in.Config.ConditionEvaluateAt = "send" },
			map[string]string{"config.conditionEvaluateAt": "send needs a config.condition"}},
		// Templates are tenants' code: what would make a render explode is
		// refused before it is stored.
		{"nested each over the macros", func(_ *bundle, in *actions.Input) {
			in.Config.HTML = "{{#each @root}}{{#each @root}}{{#each @root}}{{this}}{{/each}}{{/each}}{{/each}}"
		}, map[string]string{"config.html": "the template has an {{#each}} inside another {{#each}}"}},
		{"log helper", func(_ *bundle, in *actions.Input) { in.Config.Subject = "Hi {{log FNAME}}" },
			map[string]string{"config.subject": "{{log}}"}},
		{"partial in a locale", func(_ *bundle, in *actions.Input) {
			in.Config.Locales = map[string]actions.Content{"fr": {Text: "{{> footer}}"}}
		}, map[string]string{"config.locales.fr.text": "partial"}},
		{"template too large", func(_ *bundle, in *actions.Input) { in.Config.Text = strings.Repeat("x", 64<<10+1) },
			map[string]string{"config.text": "more than 65536 (templates.maxSize)"}},
		{"template too deep", func(_ *bundle, in *actions.Input) {
			in.Config.Data = map[string]string{"k": strings.Repeat("{{#if A}}", 17) + strings.Repeat("{{/if}}", 17)}
		}, map[string]string{"config.data.k": "deeper than 16 (templates.maxDepth)"}},
		{"template that does not parse", func(_ *bundle, in *actions.Input) { in.Config.HTML = "{{#if A}}never closed" },
			map[string]string{"config.html": "does not parse"}},
		{"every problem at once", func(_ *bundle, in *actions.Input) {
			in.Name = ""
			in.Status = "x"
			in.EventID = 0
			in.ConfigName = ""
		}, map[string]string{"name": "", "status": "", "eventId": "", "configName": ""}},
	}
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				in := email(b.event, testdb.Name("a"))
				tc.mutate(b, &in)
				_, err := b.svc.Create(b.ctx, b.admin, b.coll, in)
				got := fields(t, err)
				require.Len(t, got, len(tc.want), "details: %v", got)
				for f, reason := range tc.want {
					require.Contains(t, got, f)
					require.Contains(t, got[f], reason)
				}
			})
		}
		require.Empty(t, outboxRows(t, db), "a refused create writes no envelope")

		valid := map[string]actions.Input{
			"email with inline content": {Name: "inline", EventID: b.event, ConfigName: actions.ConfigEmail,
				Config: actions.Config{Content: actions.Content{Subject: "Hi", Text: "Hello"}, FromEmail: "noreply@example.com",
					InDoubt: actions.InDoubtResend}},
			"email with a legacy template id": {Name: "legacy", EventID: b.event, ConfigName: actions.ConfigEmail,
				Template: "13b8f94f-bcae-4ec6-b752-70d6cb59f932"},
			"sms with a sender": {Name: "sms", EventID: b.event, ConfigName: actions.ConfigSMS, Status: actions.StatusInactive,
				Config: actions.Config{Content: actions.Content{Body: "x"}, From: "+14155550100",
					MessagingServiceSID: "MG0123456789abcdef0123456789abcdef", InDoubt: actions.InDoubtMarkUnknown}},
			"push with a body only": {Name: "push", EventID: b.event, ConfigName: actions.ConfigPush,
				Config: actions.Config{Content: actions.Content{Body: "x"}, MissingMacro: actions.MissingBlank,
					Condition: `recipient.macros["user.tier"] == ""`}},
		}
		for name, in := range valid {
			_, err := b.svc.Create(b.ctx, b.admin, b.coll, in)
			require.NoError(t, err, name)
		}
	})
}

func TestCreateInMissingCollectionIsNotFound(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		_, err := b.svc.Create(b.ctx, b.admin, 987654, email(b.event, "x"))
		requireKind(t, err, apperr.NotFound)
		// Even an invalid body: the path names nothing.
		_, err = b.svc.Create(b.ctx, b.admin, 987654, actions.Input{})
		requireKind(t, err, apperr.NotFound)
		_, err = b.svc.List(b.ctx, b.admin, 987654, actions.Filter{}, actions.Page{Limit: 10})
		requireKind(t, err, apperr.NotFound)
	})
}

func TestListFiltersAndPages(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		a1 := b.create(t, email(b.event, "a1"))
		in := sms(b.event, "a2")
		in.Status = actions.StatusInactive
		a2 := b.create(t, in)
		a3 := b.create(t, push(b.event2, "a3"))
		a4 := b.create(t, email(b.event2, "a4"))
		_, err := b.svc.Create(b.ctx, b.admin, b.other, email(b.otherEv, "elsewhere"))
		require.NoError(t, err)

		ids := func(list []actions.Action) []int64 {
			out := []int64{}
			for _, a := range list {
				out = append(out, a.ID)
			}
			return out
		}
		list := func(f actions.Filter, p actions.Page) []int64 {
			t.Helper()
			got, err := b.svc.List(b.ctx, b.admin, b.coll, f, p)
			require.NoError(t, err)
			return ids(got)
		}
		all := actions.Page{Limit: 100}
		require.Equal(t, []int64{a1.ID, a2.ID, a3.ID, a4.ID}, list(actions.Filter{}, all))
		require.Equal(t, []int64{a3.ID, a4.ID}, list(actions.Filter{EventID: b.event2}, all))
		require.Equal(t, []int64{a2.ID}, list(actions.Filter{Status: actions.StatusInactive}, all))
		require.Equal(t, []int64{a1.ID, a4.ID}, list(actions.Filter{ConfigName: actions.ConfigEmail}, all))
		require.Equal(t, []int64{a4.ID}, list(actions.Filter{EventID: b.event2, ConfigName: actions.ConfigEmail, Status: actions.StatusActive}, all))
		require.Equal(t, []int64{}, list(actions.Filter{EventID: b.otherEv}, all), "another collection's event matches nothing here")

		// Keyset pages: every action once, in id order.
		var paged []int64
		p := actions.Page{Limit: 3}
		for {
			page := list(actions.Filter{}, p)
			paged = append(paged, page...)
			if len(page) < p.Limit {
				break
			}
			p.After = page[len(page)-1]
		}
		require.Equal(t, []int64{a1.ID, a2.ID, a3.ID, a4.ID}, paged)

		// A page is one query, whatever its size.
		var queries int
		cb := "count_queries_" + testdb.Name("")
		require.NoError(t, db.Callback().Query().Before("gorm:query").Register(cb, func(*gorm.DB) { queries++ }))
		require.NoError(t, db.Callback().Raw().Before("gorm:raw").Register(cb, func(*gorm.DB) { queries++ }))
		require.NoError(t, db.Callback().Row().Before("gorm:row").Register(cb, func(*gorm.DB) { queries++ }))
		require.Len(t, list(actions.Filter{}, all), 4)
		require.Equal(t, 1, queries)
		require.NoError(t, db.Callback().Query().Remove(cb))
		require.NoError(t, db.Callback().Raw().Remove(cb))
		require.NoError(t, db.Callback().Row().Remove(cb))

		_, err = b.svc.List(b.ctx, b.admin, b.coll, actions.Filter{Status: "x", ConfigName: "y", EventID: -1}, actions.Page{Limit: 0})
		got := fields(t, err)
		require.Contains(t, got, "status")
		require.Contains(t, got, "configName")
		require.Contains(t, got, "eventId")
		require.Contains(t, got, "limit")

		empty := b.collection(t, "empty", actions.StatusActive)
		none, err := b.svc.List(b.ctx, b.admin, empty, actions.Filter{}, all)
		require.NoError(t, err)
		require.NotNil(t, none, "an empty page is [], not null")
		require.Empty(t, none)
	})
}

func TestVersionPreconditions(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		a := b.create(t, email(b.event, "a"))

		_, err := b.svc.Update(b.ctx, b.admin, b.coll, a.ID, actions.Patch{Description: ptr("x")}, 7)
		e := requireKind(t, err, apperr.PreconditionFailed)
		require.Equal(t, []apperr.Detail{{Field: "If-Match", Reason: `the current ETag is "1"`}}, e.Details)
		_, err = b.svc.Delete(b.ctx, b.admin, b.coll, a.ID, 7)
		requireKind(t, err, apperr.PreconditionFailed)

		up, err := b.svc.Update(b.ctx, b.admin, b.coll, a.ID, actions.Patch{Description: ptr("x")}, 1)
		require.NoError(t, err)
		require.Equal(t, int64(2), up.Version)
		_, err = b.svc.Update(b.ctx, b.admin, b.coll, a.ID, actions.Patch{Description: ptr("y")}, 1)
		requireKind(t, err, apperr.PreconditionFailed)
		_, err = b.svc.Delete(b.ctx, b.admin, b.coll, a.ID, 1)
		requireKind(t, err, apperr.PreconditionFailed)

		got, err := b.svc.Get(b.ctx, b.admin, b.coll, a.ID)
		require.NoError(t, err)
		require.Equal(t, "x", got.Description, "stale writes changed nothing")
		require.Len(t, outboxRows(t, db), 2, "create and the one update")

		// Concurrent writers with the same If-Match: exactly one wins.
		const writers = 4
		gateWrites(t, db, "update", writers)
		var wg sync.WaitGroup
		errs := make([]error, writers)
		for i := range writers {
			wg.Go(func() {
				_, errs[i] = b.svc.Update(b.ctx, b.admin, b.coll, a.ID, actions.Patch{Description: ptr(fmt.Sprint("w", i))}, 2)
			})
		}
		wg.Wait()
		wins := 0
		for _, err := range errs {
			if err == nil {
				wins++
				continue
			}
			requireKind(t, err, apperr.PreconditionFailed)
		}
		require.Equal(t, 1, wins)

		// Concurrent writers without If-Match: none is lost.
		gateWrites(t, db, "update", writers)
		for i := range writers {
			wg.Go(func() {
				_, errs[i] = b.svc.Update(b.ctx, b.admin, b.coll, a.ID, actions.Patch{Description: ptr(fmt.Sprint("v", i))}, 0)
			})
		}
		wg.Wait()
		for _, err := range errs {
			require.NoError(t, err)
		}
		got, err = b.svc.Get(b.ctx, b.admin, b.coll, a.ID)
		require.NoError(t, err)
		require.Equal(t, int64(3+writers), got.Version)
		require.Len(t, outboxRows(t, db), 3+writers)

		d, err := b.svc.Delete(b.ctx, b.admin, b.coll, a.ID, got.Version)
		require.NoError(t, err)
		require.Equal(t, actions.DeletedCode, d.ResponseCode)
	})
}

func TestNamesAreUniquePerEvent(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		a := b.create(t, email(b.event, "Welcome"))
		_, err := b.svc.Create(b.ctx, b.admin, b.coll, sms(b.event, "Welcome"))
		e := requireKind(t, err, apperr.AlreadyExists)
		require.Equal(t, "name", e.Details[0].Field)
		require.Contains(t, e.Details[0].Reason, strconv.FormatInt(a.ID, 10))

		other := b.create(t, email(b.event2, "Welcome")) // another event may reuse it
		second := b.create(t, email(b.event, "Second"))

		_, err = b.svc.Update(b.ctx, b.admin, b.coll, second.ID, actions.Patch{Name: ptr("Welcome")}, 0)
		requireKind(t, err, apperr.AlreadyExists)
		_, err = b.svc.Update(b.ctx, b.admin, b.coll, other.ID, actions.Patch{EventID: ptr(b.event)}, 0)
		requireKind(t, err, apperr.AlreadyExists)
		_, err = b.svc.Update(b.ctx, b.admin, b.coll, a.ID, actions.Patch{Name: ptr("Welcome")}, 0)
		require.NoError(t, err, "keeping its own name is no conflict")

		// Concurrent creates of one name: the event lock lets exactly one in.
		const n = 4
		gateWrites(t, db, "create", n)
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() { _, errs[i] = b.svc.Create(b.ctx, b.admin, b.coll, sms(b.event2, "Race")) })
		}
		wg.Wait()
		wins := 0
		for _, err := range errs {
			if err == nil {
				wins++
				continue
			}
			requireKind(t, err, apperr.AlreadyExists)
		}
		require.Equal(t, 1, wins)
	})
}

func TestUpdateValidatesTheMergedAction(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		a := b.create(t, email(b.event, "a"))

		_, err := b.svc.Update(b.ctx, b.admin, b.coll, a.ID, actions.Patch{}, 0)
		require.Contains(t, fields(t, err), "body")

		// Switching to SMS alone leaves an SMS with a SendGrid template and no body.
		_, err = b.svc.Update(b.ctx, b.admin, b.coll, a.ID, actions.Patch{ConfigName: ptr(actions.ConfigSMS)}, 0)
		got := fields(t, err)
		require.Contains(t, got, "template")
		require.Contains(t, got, "config.body")

		_, err = b.svc.Update(b.ctx, b.admin, b.coll, a.ID, actions.Patch{EventID: ptr(b.otherEv)}, 0)
		require.Contains(t, fields(t, err)["eventId"], "is not an event of collection")
		_, err = b.svc.Update(b.ctx, b.admin, b.coll, a.ID, actions.Patch{EventID: ptr(int64(0))}, 0)
		require.Contains(t, fields(t, err), "eventId")

		up, err := b.svc.Update(b.ctx, b.admin, b.coll, a.ID, actions.Patch{
			ConfigName: ptr(actions.ConfigSMS), Template: ptr(""),
			Config:  &actions.Config{Content: actions.Content{Body: "Hi"}},
			EventID: ptr(b.event2),
		}, 0)
		require.NoError(t, err)
		require.Equal(t, actions.ConfigSMS, up.ConfigName)
		require.Equal(t, b.event2, up.EventID)
		require.Equal(t, "Hi", up.Config.Body)
		require.Equal(t, a.Description, up.Description, "fields the patch leaves out stay")

		_, err = b.svc.Update(b.ctx, b.admin, b.coll, 987654, actions.Patch{Name: ptr("x")}, 0)
		requireKind(t, err, apperr.NotFound)
		_, err = b.svc.Update(b.ctx, b.admin, b.other, a.ID, actions.Patch{Name: ptr("x")}, 0)
		requireKind(t, err, apperr.NotFound) // the action is not in that collection
	})
}

func TestFailedMutationsWriteNoEnvelope(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		a := b.create(t, email(b.event, "a"))
		require.Len(t, outboxRows(t, db), 1)
		committed := b.writer.committed.Load()

		failures := []error{
			func() error { _, err := b.svc.Create(b.ctx, b.admin, b.coll, actions.Input{}); return err }(),
			func() error { _, err := b.svc.Create(b.ctx, b.admin, b.coll, email(b.event, "a")); return err }(),
			func() error { _, err := b.svc.Create(b.ctx, b.admin, b.coll, email(b.otherEv, "b")); return err }(),
			func() error {
				_, err := b.svc.Update(b.ctx, b.admin, b.coll, a.ID, actions.Patch{Name: ptr("")}, 0)
				return err
			}(),
			func() error {
				_, err := b.svc.Update(b.ctx, b.admin, b.coll, a.ID, actions.Patch{Name: ptr("z")}, 9)
				return err
			}(),
			func() error { _, err := b.svc.Delete(b.ctx, b.admin, b.coll, a.ID, 9); return err }(),
			func() error { _, err := b.svc.Delete(b.ctx, b.admin, b.coll, 987654, 0); return err }(),
		}
		for i, err := range failures {
			require.Error(t, err, "case %d", i)
		}
		require.Len(t, outboxRows(t, db), 1)
		require.Equal(t, committed, b.writer.committed.Load())

		// When the envelope cannot be written, the change rolls back with it.
		b.writer.fail.Store(true)
		_, err := b.svc.Create(b.ctx, b.admin, b.coll, email(b.event, "lost"))
		requireKind(t, err, apperr.Internal)
		_, err = b.svc.Update(b.ctx, b.admin, b.coll, a.ID, actions.Patch{Name: ptr("renamed")}, 0)
		requireKind(t, err, apperr.Internal)
		_, err = b.svc.Delete(b.ctx, b.admin, b.coll, a.ID, 0)
		requireKind(t, err, apperr.Internal)

		list, err := b.svc.List(b.ctx, b.admin, b.coll, actions.Filter{}, actions.Page{Limit: 10})
		require.NoError(t, err)
		require.Len(t, list, 1)
		require.Equal(t, a, list[0], "neither renamed nor deleted")
		require.Equal(t, committed, b.writer.committed.Load())
	})
}

// TestTemplateLimitsAreConfig: the size a template may have is the
// service's templates.maxSize, not a constant.
func TestTemplateLimitsAreConfig(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		b.svc.WithRenderLimits(macros.RenderLimits{MaxTemplateBytes: 16})
		in := email(b.event, testdb.Name("a"))
		in.Config.Subject = "Hello {{FNAME}}, welcome"
		_, err := b.svc.Create(b.ctx, b.admin, b.coll, in)
		require.Contains(t, fields(t, err)["config.subject"], "more than 16 (templates.maxSize)")
	})
}
