package httpapi_test

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/config"
)

// seedAction stores an action of configName with cfg in a fresh collection.
func seedAction(t *testing.T, api *testAPI, configName, template string, cfg actions.Config) (collectionID, actionID int64) {
	t.Helper()
	collectionID = seedCollection(t, api.DB)
	eventID := seedEvent(t, api.DB, collectionID, "USER_INVITEUSER")
	now := time.Now().UnixMilli()
	a := actions.Action{CollectionID: collectionID, EventID: eventID, Name: "a-" + configName, Status: actions.StatusActive,
		ConfigName: configName, Template: template, Config: cfg, CreatedTime: now, UpdatedTime: now}
	require.NoError(t, api.DB.Create(&a).Error)
	return collectionID, a.ID
}

func previewPath(cid, aid int64) string {
	return fmt.Sprintf("/v1/collections/%d/actions/%d/preview", cid, aid)
}

func TestPreviewRoute(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, api *testAPI) {
		email := actions.Config{
			Content: actions.Content{Subject: "Hello {{FNAME}}", HTML: "<p>Hi {{FNAME}}</p>", Text: "Hi {{FNAME}}"},
			Locales: map[string]actions.Content{"fr": {Subject: "Bonjour {{FNAME}}", HTML: "<p>Salut {{FNAME}}</p>"}},
		}
		cid, aid := seedAction(t, api, actions.ConfigEmail, "", email)
		viewer := api.token(auth.Principal{Roles: []string{auth.RoleViewer}, Collections: []int64{cid}})

		res := api.do(http.MethodPost, previewPath(cid, aid), viewer, map[string]any{
			"locale": "fr_CA", "macros": map[string]string{"FNAME": "<Élise>"}})
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		p := res.JSON["preview"].(map[string]any)
		require.Equal(t, "email", p["channel"])
		require.Equal(t, "fr", p["variant"], "fr_CA falls back to fr")
		require.Equal(t, map[string]any{"subject": "Bonjour <Élise>", "html": "<p>Salut &lt;Élise&gt;</p>", "text": "Hi <Élise>"}, p["content"])
		require.Equal(t, []any{"FNAME"}, p["macros"])
		require.Empty(t, p["missing"])
		require.Empty(t, p["problems"])

		// Missing macros under the fail policy: shown as placeholders, and
		// the preview says the send would fail.
		res = api.do(http.MethodPost, previewPath(cid, aid), viewer, map[string]any{"macros": map[string]string{}})
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		p = res.JSON["preview"].(map[string]any)
		require.Equal(t, "", p["variant"])
		require.Equal(t, "Hello {{FNAME}}", p["content"].(map[string]any)["subject"])
		require.Equal(t, []any{"FNAME"}, p["missing"])
		require.Equal(t, "fail", p["missingPolicy"])
		require.Equal(t, []any{`subject: macros: missing macro "FNAME"`}, p["problems"])

		// Nothing was sent.
		require.Empty(t, api.App.Sandbox.Messages())

		res = api.do(http.MethodPost, previewPath(cid, aid+1000), viewer, map[string]any{})
		requireError(t, res, http.StatusNotFound, "NOT_FOUND", "NOPVCRT0404")
		res = api.do(http.MethodPost, previewPath(cid, aid), viewer, map[string]any{"macro": map[string]string{}})
		requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOPVCRT0400")
		require.Contains(t, details(res), "macro")
	})
}

func TestPreviewSMSAndPush(t *testing.T) {
	t.Parallel()
	api := newAPI(t, "sqlite")
	admin := api.superAdmin()

	cid, aid := seedAction(t, api, actions.ConfigSMS, "", actions.Config{MissingMacro: actions.MissingBlank,
		Content: actions.Content{Body: "Привет {{FNAME}}! Код {{CODE}} 🎉"}})
	res := api.do(http.MethodPost, previewPath(cid, aid), admin, map[string]any{"macros": map[string]string{"FNAME": "Анна"}})
	require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
	p := res.JSON["preview"].(map[string]any)
	require.Equal(t, "Привет Анна! Код  🎉", p["content"].(map[string]any)["body"])
	require.Equal(t, []any{"CODE"}, p["missing"])
	require.Empty(t, p["problems"], "blank policy: a missing macro does not stop the send")
	require.Equal(t, map[string]any{"encoding": "UCS-2", "characters": float64(19), "units": float64(20), "segments": float64(1)}, p["sms"])

	// Over the configured segment limit (channels.twilio.maxSegments = 10).
	_, long := seedAction(t, api, actions.ConfigSMS, "", actions.Config{Content: actions.Content{Body: strings.Repeat("ж", 67*11)}})
	res = api.do(http.MethodPost, previewPath(cid, long), admin, map[string]any{})
	require.Equal(t, http.StatusNotFound, res.Code, "another collection's action")
	cid2 := collectionOf(t, api, long)
	res = api.do(http.MethodPost, previewPath(cid2, long), admin, map[string]any{})
	require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
	p = res.JSON["preview"].(map[string]any)
	require.Contains(t, p["problems"].([]any)[0], "11 UCS-2 segments, more than the limit of 10")

	cid, aid = seedAction(t, api, actions.ConfigPush, "", actions.Config{Content: actions.Content{
		Title: "{{FNAME}}", Body: "hi", Data: map[string]string{"link": "app://{{ID}}"}}})
	res = api.do(http.MethodPost, previewPath(cid, aid), admin, map[string]any{"macros": map[string]string{"FNAME": "Ann", "ID": "7"}})
	require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
	p = res.JSON["preview"].(map[string]any)
	require.Equal(t, map[string]any{"title": "Ann", "body": "hi", "data": map[string]any{"link": "app://7"}}, p["content"])
	require.Equal(t, []any{"FNAME", "ID"}, p["macros"])
	require.EqualValues(t, len(`{"notification":{"title":"Ann","body":"hi"},"data":{"link":"app://7"}}`), p["pushPayloadBytes"])

	// A dynamic template is rendered by SendGrid: the preview shows what goes there.
	cid, aid = seedAction(t, api, actions.ConfigEmail, "d-1257a7b8169f4d84aa3393cb4437cbcf", actions.Config{})
	res = api.do(http.MethodPost, previewPath(cid, aid), admin, map[string]any{"macros": map[string]string{"FNAME": "Ann"}})
	require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
	p = res.JSON["preview"].(map[string]any)
	require.Equal(t, "d-1257a7b8169f4d84aa3393cb4437cbcf", p["templateId"])
	// With the one-click unsubscribe link, for the template's {{unsubscribeUrl}}.
	require.Equal(t, map[string]any{"FNAME": "Ann", "unsubscribeUrl": "http://127.0.0.1:8080/unsubscribe/sample-token"}, p["dynamicTemplateData"])

	// A template that does not parse is the action's fault.
	cid, aid = seedAction(t, api, actions.ConfigEmail, "", actions.Config{Content: actions.Content{Subject: "s", HTML: "{{#if A}}never closed"}})
	res = api.do(http.MethodPost, previewPath(cid, aid), admin, map[string]any{})
	requireError(t, res, http.StatusConflict, "FAILED_PRECONDITION", "NOPVCRT0409")
	require.Contains(t, details(res), "config.html")
}

func collectionOf(t *testing.T, api *testAPI, actionID int64) int64 {
	t.Helper()
	var cid int64
	require.NoError(t, api.DB.Raw("SELECT collection_id FROM actions WHERE id = ?", actionID).Scan(&cid).Error)
	return cid
}

// TestPreviewRenderLimits: the preview renders within the same limits as
// the dispatcher. A template stored before the limits existed (written here
// straight to the database: the API refuses it) that loops over the macros
// inside itself, and a template whose output the request's macros blow up
// to 10 MB, both answer 400 naming the field and the limit.
func TestPreviewRenderLimits(t *testing.T) {
	t.Parallel()
	// No deadline in reach: the limits asserted are steps and output,
	// whatever the machine's load.
	api := newAPI(t, "sqlite", func(c *config.Config) { c.Templates.RenderTimeout = time.Hour })
	admin := api.superAdmin()

	loops := strings.Repeat("{{#each @root}}", 4) + "{{this}}" + strings.Repeat("{{/each}}", 4)
	cid, aid := seedAction(t, api, actions.ConfigEmail, "", actions.Config{MissingMacro: actions.MissingBlank,
		Content: actions.Content{Subject: "s", HTML: loops}})
	vars := map[string]string{}
	for i := range 20 { // 20^4 iterations
		vars[fmt.Sprintf("M%02d", i)] = "v"
	}
	res := api.do(http.MethodPost, previewPath(cid, aid), admin, map[string]any{"macros": vars})
	requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOPVCRT0400")
	require.Contains(t, details(res)["config.html"], "render_limit: more than 50000 steps")

	cid, aid = seedAction(t, api, actions.ConfigEmail, "", actions.Config{
		Content: actions.Content{Subject: "s", HTML: strings.Repeat("{{V}}", 200)}})
	res = api.do(http.MethodPost, previewPath(cid, aid), admin, map[string]any{"macros": map[string]string{"V": strings.Repeat("a", 50<<10)}})
	requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOPVCRT0400")
	require.Contains(t, details(res)["config.html"], "render_limit: output exceeds 1048576 bytes (templates.maxOutput)")

	// The same action with ordinary macros renders.
	res = api.do(http.MethodPost, previewPath(cid, aid), admin, map[string]any{"macros": map[string]string{"V": "a"}})
	require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
}

// TestPreviewRateLimit: each user has preview.ratePerMinute previews a
// minute; past it, 429 with Retry-After and the error body, and other users
// are not affected.
func TestPreviewRateLimit(t *testing.T) {
	t.Parallel()
	api := newAPI(t, "sqlite", func(c *config.Config) { c.Preview.RatePerMinute = 2 })
	cid, aid := seedAction(t, api, actions.ConfigSMS, "", actions.Config{Content: actions.Content{Body: "Hi {{FNAME}}"}})
	one := api.token(auth.Principal{UserID: "1", Roles: []string{auth.RoleViewer}, Collections: []int64{cid}})
	two := api.token(auth.Principal{UserID: "2", Roles: []string{auth.RoleViewer}, Collections: []int64{cid}})
	body := map[string]any{"macros": map[string]string{"FNAME": "Ann"}}
	for range 2 {
		res := api.do(http.MethodPost, previewPath(cid, aid), one, body)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
	}
	res := api.do(http.MethodPost, previewPath(cid, aid), one, body)
	requireError(t, res, http.StatusTooManyRequests, "RESOURCE_EXHAUSTED", "NOPVCRT0429")
	wait, err := strconv.Atoi(res.Header.Get("Retry-After"))
	require.NoError(t, err, "Retry-After: %q", res.Header.Get("Retry-After"))
	require.InDelta(t, 30, wait, 1, "one preview every 30 s at 2 a minute")

	res = api.do(http.MethodPost, previewPath(cid, aid), two, body)
	require.Equal(t, http.StatusOK, res.Code, "another user has their own rate: %s", res.Raw)
}
