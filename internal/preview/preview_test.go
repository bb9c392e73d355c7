package preview_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/macros"
	"github.com/notificationservice/notificationservice/internal/preview"
	"github.com/notificationservice/notificationservice/internal/render"
)

func TestActionLimits(t *testing.T) {
	t.Parallel()
	sms := actions.Action{ConfigName: actions.ConfigSMS, Config: actions.Config{Content: actions.Content{Text: "{{X}} only text"}}}
	r, err := preview.Action(sms, "", map[string]string{"X": "hi"}, render.Unsubscribe{}, macros.Limits{SMSMaxSegments: 1})
	require.NoError(t, err)
	require.Equal(t, "hi only text", r.Content.Body, "SMS falls back to text, as the dispatcher does")
	require.Equal(t, 1, r.SMS.Segments)
	require.Empty(t, r.Problems)

	push := actions.Action{ConfigName: actions.ConfigPush, Config: actions.Config{Content: actions.Content{Title: "{{X}}"}}}
	r, err = preview.Action(push, "", map[string]string{"X": "0123456789"}, render.Unsubscribe{}, macros.Limits{PushMaxPayloadBytes: 20})
	require.NoError(t, err)
	require.Len(t, r.Problems, 1)
	require.Contains(t, r.Problems[0], "more than the limit of 20")
}
