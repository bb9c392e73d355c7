package render_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/macros"
	"github.com/notificationservice/notificationservice/internal/message"
	"github.com/notificationservice/notificationservice/internal/render"
)

var service = render.Senders{
	Email:   message.Address{Email: "noreply@service.test", Name: "Service"},
	SMSFrom: "+15550000000", MessagingServiceSID: "MGservice",
}

// TestMessage is the sending rules, one row each: every channel, the locale
// fallback, each channel's field fallback, sender precedence, the
// missing-macro policies, HTML escaping and the render limits.
func TestMessage(t *testing.T) {
	t.Parallel()
	ann := message.Address{Email: "ann@example.com", Name: "Ann"}
	email := func(cfg actions.Config) actions.Action {
		return actions.Action{ID: 7, CollectionID: 3, ConfigName: actions.ConfigEmail, Config: cfg}
	}
	sms := func(cfg actions.Config) actions.Action {
		return actions.Action{ConfigName: actions.ConfigSMS, Config: cfg}
	}
	push := func(cfg actions.Config) actions.Action {
		return actions.Action{ConfigName: actions.ConfigPush, Config: cfg}
	}
	localized := actions.Config{
		Content: actions.Content{Subject: "Hello {{N}}", Text: "Code {{C}}"},
		Locales: map[string]actions.Content{
			"fr": {Subject: "Bonjour {{N}}", Text: "Code : {{C}}"},
			// fr_CA overrides only the subject; its text is fr's.
			"fr_CA": {Subject: "Allô {{N}}"},
		},
	}
	vars := map[string]string{"N": "<Zoé & co>", "C": "42"}
	for _, tc := range []struct {
		name    string
		action  actions.Action
		rc      render.Recipient
		lim     macros.RenderLimits
		want    message.Message
		wantErr string // the error's text; its field is checked through FieldError where it has one
		field   string
	}{
		{
			name: "email: html escaped, text and subject not; the service sender last",
			action: email(actions.Config{Content: actions.Content{
				Subject: "Hi {{N}}", HTML: "<p>{{N}}</p><p>{{{N}}}</p>", Text: "Hi {{N}}"}}),
			rc: render.Recipient{To: []message.Address{ann}, Cc: []message.Address{{Email: "cc@example.com"}}, Bcc: []message.Address{{Email: "bcc@example.com"}}, Macros: vars},
			want: message.Message{Channel: "email", CollectionID: 3, ActionID: 7, From: service.Email,
				To: []message.Address{ann}, Cc: []message.Address{{Email: "cc@example.com"}}, Bcc: []message.Address{{Email: "bcc@example.com"}},
				Subject: "Hi <Zoé & co>", HTML: "<p>&lt;Zoé &amp; co&gt;</p><p><Zoé & co></p>", Text: "Hi <Zoé & co>"},
		},
		{
			name: "email: the action's sender (or its collection's, filled by ForSend) before the service's",
			action: email(actions.Config{FromEmail: "team@tenant.test", FromName: "Team",
				Content: actions.Content{Subject: "s", Body: "plain {{C}}"}}),
			rc: render.Recipient{To: []message.Address{ann}, Macros: vars},
			want: message.Message{Channel: "email", CollectionID: 3, ActionID: 7, From: message.Address{Email: "team@tenant.test", Name: "Team"},
				To: []message.Address{ann}, Subject: "s", Text: "plain 42"},
		},
		{
			name:   "email: a dynamic template carries the macros for SendGrid",
			action: actions.Action{ConfigName: actions.ConfigEmail, Template: "d-1", Config: actions.Config{}},
			rc:     render.Recipient{To: []message.Address{ann}, Macros: vars},
			want:   message.Message{Channel: "email", From: service.Email, To: []message.Address{ann}, TemplateID: "d-1", DynamicData: vars},
		},
		{
			name:    "email: nothing to send",
			action:  email(actions.Config{Content: actions.Content{Subject: "only a subject"}}),
			wantErr: "the action has neither a template nor content for this email",
		},
		{
			name:   "locale: the exact variant, its empty fields from the language's",
			action: email(localized), rc: render.Recipient{Locale: "fr_CA", Macros: vars},
			want: message.Message{Channel: "email", CollectionID: 3, ActionID: 7, From: service.Email, Subject: "Allô <Zoé & co>", Text: "Code : 42"},
		},
		{
			name:   "locale: the language when the exact locale has no variant",
			action: email(localized), rc: render.Recipient{Locale: "fr_BE", Macros: vars},
			want: message.Message{Channel: "email", CollectionID: 3, ActionID: 7, From: service.Email, Subject: "Bonjour <Zoé & co>", Text: "Code : 42"},
		},
		{
			name:   "locale: the default content when neither has one",
			action: email(localized), rc: render.Recipient{Locale: "de-DE", Macros: vars},
			want: message.Message{Channel: "email", CollectionID: 3, ActionID: 7, From: service.Email, Subject: "Hello <Zoé & co>", Text: "Code 42"},
		},
		{
			name:   "sms: the body; the service's sender pair",
			action: sms(actions.Config{Content: actions.Content{Body: "Code {{C}} & <b>", Text: "unused"}}),
			rc:     render.Recipient{Phone: "+15551234567", Macros: vars},
			want:   message.Message{Channel: "sms", Phone: "+15551234567", SMSFrom: service.SMSFrom, MessagingServiceSID: service.MessagingServiceSID, Body: "Code 42 & <b>"},
		},
		{
			name:   "sms: falls back to the text; the action's sender pair replaces the service's whole",
			action: sms(actions.Config{From: "+15559999999", Content: actions.Content{Text: "Code {{C}}"}}),
			rc:     render.Recipient{Phone: "+15551234567", Macros: vars},
			want:   message.Message{Channel: "sms", Phone: "+15551234567", SMSFrom: "+15559999999", Body: "Code 42"},
		},
		{
			name:    "sms: no body",
			action:  sms(actions.Config{Content: actions.Content{Subject: "s"}}),
			wantErr: "the action has no SMS body",
		},
		{
			name: "push: title, body and data, an empty data value kept",
			action: push(actions.Config{Content: actions.Content{Title: "{{N}}", Body: "hi",
				Data: map[string]string{"link": "app://{{C}}", "empty": ""}}}),
			rc:   render.Recipient{PushToken: "tok", Macros: vars},
			want: message.Message{Channel: "push", PushToken: "tok", Title: "<Zoé & co>", Body: "hi", Data: map[string]string{"link": "app://42", "empty": ""}},
		},
		{
			name:    "missing macro, fail policy (the default): the first field's error, data keys in order",
			action:  push(actions.Config{Content: actions.Content{Title: "t", Data: map[string]string{"b": "{{B}}", "a": "{{A}}"}}}),
			wantErr: `data.a: macros: missing macro "A"`, field: "data.a",
		},
		{
			name:   "missing macro, blank policy",
			action: sms(actions.Config{MissingMacro: actions.MissingBlank, Content: actions.Content{Body: "Hi {{X}}!"}}),
			want:   message.Message{Channel: "sms", SMSFrom: service.SMSFrom, MessagingServiceSID: service.MessagingServiceSID, Body: "Hi !"},
		},
		{
			name:   "missing macro, keep policy",
			action: sms(actions.Config{MissingMacro: actions.MissingKeep, Content: actions.Content{Body: "Hi {{X}}!"}}),
			want:   message.Message{Channel: "sms", SMSFrom: service.SMSFrom, MessagingServiceSID: service.MessagingServiceSID, Body: "Hi {{X}}!"},
		},
		{
			name:    "a template that does not parse",
			action:  email(actions.Config{Content: actions.Content{Subject: "s", HTML: "{{#if A}}never closed"}}),
			wantErr: "html: macros: bad template", field: "html",
		},
		{
			name: "one budget per message: fields within the limit each, over it together",
			action: email(actions.Config{Content: actions.Content{
				Subject: "s", HTML: strings.Repeat("{{V}}", 6), Text: strings.Repeat("{{V}}", 6)}}),
			rc:      render.Recipient{Macros: map[string]string{"V": strings.Repeat("a", 1000)}},
			lim:     macros.RenderLimits{MaxOutputBytes: 10_000, Timeout: time.Hour},
			wantErr: "text: render_limit: output exceeds 10000 bytes", field: "text",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			lim := tc.lim
			if lim.Timeout == 0 {
				lim.Timeout = time.Hour // no deadline in reach under load
			}
			got, err := render.Message(tc.action, tc.rc, service, lim)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				if tc.field != "" {
					var fe *macros.FieldError
					require.ErrorAs(t, err, &fe)
					require.Equal(t, tc.field, fe.Field)
				}
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

// TestMessageRenderLimit: a render over a limit is errors.Is
// macros.ErrRenderLimit, which the workers record as render_limit.
func TestMessageRenderLimit(t *testing.T) {
	t.Parallel()
	a := actions.Action{ConfigName: actions.ConfigEmail, Config: actions.Config{Content: actions.Content{
		Subject: "Hi", HTML: "<p>" + strings.Repeat("{{V}}", 200) + "</p>"}}}
	_, err := render.Message(a, render.Recipient{Macros: map[string]string{"V": strings.Repeat("a", 50<<10)}}, service,
		macros.RenderLimits{MaxOutputBytes: 1 << 20, Timeout: time.Hour})
	require.ErrorIs(t, err, macros.ErrRenderLimit)
	require.ErrorContains(t, err, "render_limit: output exceeds 1048576 bytes")
}

func TestMeasure(t *testing.T) {
	t.Parallel()
	fit, err := render.Measure(message.Message{Channel: "sms", Body: strings.Repeat("ж", 67*2)}, macros.Limits{SMSMaxSegments: 1})
	require.ErrorContains(t, err, "2 UCS-2 segments, more than the limit of 1")
	require.Equal(t, 2, fit.SMS.Segments)

	fit, err = render.Measure(message.Message{Channel: "push", Title: "0123456789"}, macros.Limits{PushMaxPayloadBytes: 20})
	require.ErrorContains(t, err, "more than the limit of 20")
	require.Equal(t, len(`{"notification":{"title":"0123456789"}}`), fit.PushPayloadBytes)

	_, err = render.Measure(message.Message{Channel: "email", Subject: "s"}, macros.Limits{})
	require.NoError(t, err, "email has no channel limit here")
}

func TestVariant(t *testing.T) {
	t.Parallel()
	cfg := actions.Config{Locales: map[string]actions.Content{"fr": {}, "pt_BR": {}}}
	for locale, want := range map[string]string{
		"fr_CA": "fr", "fr": "fr", "pt_BR": "pt_BR", "pt_PT": "", "pt": "", "de-DE": "", "": "",
	} {
		require.Equal(t, want, render.Variant(cfg, locale), locale)
	}
}

func TestContent(t *testing.T) {
	t.Parallel()
	c := actions.Content{
		Subject: "A & {{X}}", HTML: "<b>{{X}}</b>", Text: "{{X}}", Title: "{{X}}", Body: "{{X}}",
		Data: map[string]string{"b": "{{X}}", "a": "", "c": "{{NOPE}}"},
	}
	_, err := render.Content(c, map[string]string{"X": "<1>"}, "")
	var fe *macros.FieldError
	require.ErrorAs(t, err, &fe)
	require.Equal(t, "data.c", fe.Field, "fields render in order, data keys sorted")
	var me *macros.MissingError
	require.ErrorAs(t, err, &me)

	got, err := render.Content(c, map[string]string{"X": "<1>"}, macros.MissingBlank)
	require.NoError(t, err)
	require.Equal(t, actions.Content{
		Subject: "A & <1>", HTML: "<b>&lt;1&gt;</b>", Text: "<1>", Title: "<1>", Body: "<1>",
		Data: map[string]string{"a": "", "b": "<1>", "c": ""},
	}, got)
}

// An email with an unsubscribe link carries List-Unsubscribe (with the
// mailto when there is one) and List-Unsubscribe-Post, and its templates
// and dynamic data see {{unsubscribeUrl}}; other channels and emails
// without a link carry none, and the recipient's macros are not changed.
func TestMessageUnsubscribe(t *testing.T) {
	t.Parallel()
	link := render.Unsubscribe{URL: "https://n.example/unsubscribe/t0k", Mailto: "unsub@example.com"}
	macrosIn := map[string]string{"N": "Ann"}
	rc := render.Recipient{To: []message.Address{{Email: "ann@example.com"}}, Phone: "+14155550100", Macros: macrosIn, Unsubscribe: link}

	inline := actions.Action{ConfigName: actions.ConfigEmail, Config: actions.Config{Content: actions.Content{
		Subject: "Hi {{N}}", HTML: `<a href="{{unsubscribeUrl}}">unsubscribe</a>`, Text: "Stop: {{unsubscribeUrl}}"}}}
	m, err := render.Message(inline, rc, service, macros.RenderLimits{})
	require.NoError(t, err)
	require.Equal(t, map[string]string{
		"List-Unsubscribe":      "<https://n.example/unsubscribe/t0k>, <mailto:unsub@example.com?subject=unsubscribe>",
		"List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
	}, m.Headers)
	require.Equal(t, `<a href="https://n.example/unsubscribe/t0k">unsubscribe</a>`, m.HTML)
	require.Equal(t, "Stop: https://n.example/unsubscribe/t0k", m.Text)
	require.Equal(t, map[string]string{"N": "Ann"}, macrosIn, "the caller's macros are not changed")

	dynamic := actions.Action{ConfigName: actions.ConfigEmail, Template: "d-123"}
	m, err = render.Message(dynamic, render.Recipient{To: rc.To, Macros: macrosIn, Unsubscribe: render.Unsubscribe{URL: link.URL}}, service, macros.RenderLimits{})
	require.NoError(t, err)
	require.Equal(t, "https://n.example/unsubscribe/t0k", m.DynamicData["unsubscribeUrl"])
	require.Equal(t, "<https://n.example/unsubscribe/t0k>", m.Headers["List-Unsubscribe"])

	rc.Unsubscribe = render.Unsubscribe{}
	inline.Config.MissingMacro = macros.MissingKeep
	m, err = render.Message(inline, rc, service, macros.RenderLimits{})
	require.NoError(t, err)
	require.Nil(t, m.Headers, "no link, no headers")

	sms := actions.Action{ConfigName: actions.ConfigSMS, Config: actions.Config{Content: actions.Content{Body: "Hi {{N}}"}}}
	rc.Unsubscribe = link
	m, err = render.Message(sms, rc, service, macros.RenderLimits{})
	require.NoError(t, err)
	require.Nil(t, m.Headers)
}
