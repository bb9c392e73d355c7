package preview_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/macros"
	"github.com/notificationservice/notificationservice/internal/preview"
)

func TestVariant(t *testing.T) {
	t.Parallel()
	cfg := actions.Config{Locales: map[string]actions.Content{"fr": {}, "pt_BR": {}}}
	for locale, want := range map[string]string{
		"fr_CA": "fr", "fr": "fr", "pt_BR": "pt_BR", "pt_PT": "", "pt": "", "de-DE": "", "": "",
	} {
		require.Equal(t, want, preview.Variant(cfg, locale), locale)
	}
}

func TestContent(t *testing.T) {
	t.Parallel()
	c := actions.Content{
		Subject: "A & {{X}}", HTML: "<b>{{X}}</b>", Text: "{{X}}", Title: "{{X}}", Body: "{{X}}",
		Data: map[string]string{"b": "{{X}}", "a": "", "c": "{{NOPE}}"},
	}
	_, err := preview.Content(c, map[string]string{"X": "<1>"}, "")
	var fe *macros.FieldError
	require.ErrorAs(t, err, &fe)
	require.Equal(t, "data.c", fe.Field, "fields render in order, data keys sorted")
	var me *macros.MissingError
	require.ErrorAs(t, err, &me)

	got, err := preview.Content(c, map[string]string{"X": "<1>"}, macros.MissingBlank)
	require.NoError(t, err)
	require.Equal(t, actions.Content{
		Subject: "A & <1>", HTML: "<b>&lt;1&gt;</b>", Text: "<1>", Title: "<1>", Body: "<1>",
		Data: map[string]string{"a": "", "b": "<1>", "c": ""},
	}, got)
}

func TestActionLimits(t *testing.T) {
	t.Parallel()
	sms := actions.Action{ConfigName: actions.ConfigSMS, Config: actions.Config{Content: actions.Content{Text: "{{X}} only text"}}}
	r, err := preview.Action(sms, "", map[string]string{"X": "hi"}, macros.Limits{SMSMaxSegments: 1})
	require.NoError(t, err)
	require.Equal(t, "hi only text", r.Content.Body, "SMS falls back to text, as the dispatcher does")
	require.Equal(t, 1, r.SMS.Segments)
	require.Empty(t, r.Problems)

	push := actions.Action{ConfigName: actions.ConfigPush, Config: actions.Config{Content: actions.Content{Title: "{{X}}"}}}
	r, err = preview.Action(push, "", map[string]string{"X": "0123456789"}, macros.Limits{PushMaxPayloadBytes: 20})
	require.NoError(t, err)
	require.Len(t, r.Problems, 1)
	require.Contains(t, r.Problems[0], "more than the limit of 20")
}
