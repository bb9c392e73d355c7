package macros_test

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/macros"
	"github.com/notificationservice/notificationservice/internal/render"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// goldenCase is one action rendered for one recipient.
type goldenCase struct {
	name   string
	config actions.Config
	locale string
	macros map[string]string
}

// goldenResult is what a golden file holds: the input, so the file reads on
// its own, and what came out.
type goldenResult struct {
	Locale           string            `json:"locale,omitempty"`
	Macros           map[string]string `json:"macros"`
	Config           actions.Config    `json:"config"`
	Content          *actions.Content  `json:"content,omitempty"`
	Error            string            `json:"error,omitempty"`
	SMS              *macros.SMSInfo   `json:"sms,omitempty"`
	PushPayloadBytes int               `json:"pushPayloadBytes,omitempty"`
}

func TestGoldenContent(t *testing.T) {
	t.Parallel()
	email := actions.Config{Content: actions.Content{
		Subject: "Welcome, {{FNAME}} & co",
		HTML:    "<p>Hi {{FNAME}},</p><p>{{{SIGNATURE}}}</p><a href=\"https://x.test/?u={{USER}}\">go</a>",
		Text:    "Hi {{FNAME}}, <this is text>",
	}}
	localized := actions.Config{
		Content: actions.Content{Subject: "Hello {{FNAME}}", Text: "Your code is {{CODE}}"},
		Locales: map[string]actions.Content{
			"fr": {Subject: "Bonjour {{FNAME}}", Text: "Votre code est {{CODE}}"},
			// fr_CA overrides only the subject: ContentFor fills its empty
			// fields from the default content, not from fr.
			"fr_CA": {Subject: "Allô {{FNAME}}"},
		},
	}
	missing := func(policy string) actions.Config {
		return actions.Config{MissingMacro: policy, Content: actions.Content{
			Subject: "Hi {{FNAME}} {{LNAME}}",
			HTML:    "<p>{{FNAME}} {{LNAME}}</p>{{#if NICK}}<p>aka {{NICK}}</p>{{/if}}",
		}}
	}
	cases := []goldenCase{
		{name: "html_escaping", config: email, macros: map[string]string{
			"FNAME": `<Tom & "Jerry">`, "SIGNATURE": "<b>The team</b>", "USER": "a&b=c"}},
		{name: "missing_fail", config: missing(""), macros: map[string]string{"FNAME": "Ann"}},
		{name: "missing_blank", config: missing(actions.MissingBlank), macros: map[string]string{"FNAME": "Ann"}},
		{name: "missing_keep", config: missing(actions.MissingKeep), macros: map[string]string{"FNAME": "Ann"}},
		{name: "locale_exact_fr_CA", config: localized, locale: "fr_CA", macros: map[string]string{"FNAME": "Élise", "CODE": "1234"}},
		{name: "locale_language_fr_BE", config: localized, locale: "fr_BE", macros: map[string]string{"FNAME": "Élise", "CODE": "1234"}},
		{name: "locale_default_de_DE", config: localized, locale: "de_DE", macros: map[string]string{"FNAME": "Jörg", "CODE": "1234"}},
		{name: "locale_none", config: localized, macros: map[string]string{"FNAME": "Ann", "CODE": "1234"}},
		{name: "sms_gsm7", config: actions.Config{Content: actions.Content{Body: "Hi {{FNAME}}, your code is {{CODE}} [valid 10 min] €"}},
			macros: map[string]string{"FNAME": "Zoé", "CODE": "987654"}},
		{name: "sms_unicode", config: actions.Config{Content: actions.Content{Body: "Привет, {{FNAME}}! Код: {{CODE}} 🎉 — <b>не HTML</b>"}},
			macros: map[string]string{"FNAME": "Анна & Co", "CODE": "987654"}},
		{name: "push", config: actions.Config{Content: actions.Content{
			Title: "{{FNAME}}, you have a message", Body: "From {{SENDER}}: \"{{PREVIEW}}\"",
			Data: map[string]string{"deeplink": "app://inbox/{{THREAD}}", "kind": "message"}}},
			macros: map[string]string{"FNAME": "Ann", "SENDER": "<Bob>", "PREVIEW": "See you at 5 & bring cake", "THREAD": "77"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := goldenResult{Locale: tc.locale, Macros: tc.macros, Config: tc.config}
			content, err := render.ForRecipient(tc.config, tc.locale, tc.macros)
			if err != nil {
				res.Error = err.Error()
			} else {
				res.Content = &content
				if content.Body != "" && content.Title == "" {
					info := macros.SMS(content.Body)
					res.SMS = &info
				}
				if content.Title != "" {
					res.PushPayloadBytes = macros.PushPayloadSize(content.Title, content.Body, content.Data)
				}
			}
			got, err := json.MarshalIndent(res, "", "  ")
			require.NoError(t, err)
			got = append(got, '\n')
			path := filepath.Join("testdata", "golden", tc.name+".golden")
			if *update {
				require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
				require.NoError(t, os.WriteFile(path, got, 0o644))
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err, "run go test ./internal/macros -run TestGoldenContent -update")
			require.Equal(t, string(want), string(got))
		})
	}
}
