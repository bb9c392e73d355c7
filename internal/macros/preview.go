package macros

import (
	"errors"
	"sort"

	"github.com/notificationservice/notificationservice/internal/actions"
)

// Limits are the channel limits a preview checks, as the channels enforce
// them before sending.
type Limits struct {
	SMSMaxSegments      int // 0: no limit
	PushMaxPayloadBytes int // 0: the FCM limit
}

// Preview is an action rendered for one recipient without sending.
type Preview struct {
	Channel string `json:"channel"`
	Locale  string `json:"locale,omitempty"`
	// Variant is the locale variant the content came from (fr_CA, fr), ""
	// for the action's default content.
	Variant string          `json:"variant"`
	Content actions.Content `json:"content"`
	// TemplateID and DynamicTemplateData are what SendGrid receives for a
	// dynamic template, which SendGrid renders; they are not rendered here.
	TemplateID          string            `json:"templateId,omitempty"`
	DynamicTemplateData map[string]string `json:"dynamicTemplateData,omitempty"`
	// Macros are the macros the content prints unconditionally; Missing
	// those the given macros lack.
	Macros           []string `json:"macros"`
	Missing          []string `json:"missing"`
	MissingPolicy    string   `json:"missingPolicy"`
	SMS              *SMSInfo `json:"sms,omitempty"`
	PushPayloadBytes int      `json:"pushPayloadBytes,omitempty"`
	// Problems say why this recipient's delivery would fail (a missing
	// macro under the fail policy, content over a limit). Empty: it would
	// be sent.
	Problems []string `json:"problems"`
}

// PreviewAction renders a for a recipient with locale and vars, as the
// dispatcher would, and reports what would stop the send. Missing macros
// under the fail policy render as their placeholders and are listed in
// Problems. A template that does not parse is an error (a *FieldError
// wrapping a *TemplateError).
func PreviewAction(a actions.Action, locale string, vars map[string]string, lim Limits) (Preview, error) {
	cfg := a.Config
	p := Preview{
		Channel: a.Channel(), Locale: locale, Variant: VariantFor(cfg, locale),
		MissingPolicy: cfg.MissingMacro, Macros: []string{}, Missing: []string{}, Problems: []string{},
	}
	if p.MissingPolicy == "" {
		p.MissingPolicy = MissingFail
	}
	src := cfg.ContentFor(locale)
	// The dispatcher's fallbacks: SMS sends Body (else Text), email's plain
	// part is Text (else Body).
	switch p.Channel {
	case actions.ChannelSMS:
		if src.Body == "" {
			src.Body, src.Text = src.Text, ""
		}
	case actions.ChannelEmail:
		if src.Text == "" {
			src.Text, src.Body = src.Body, ""
		}
	}

	required, err := requiredMacros(src)
	if err != nil {
		return Preview{}, err
	}
	p.Macros = required
	for _, name := range required {
		if _, ok := vars[name]; !ok {
			p.Missing = append(p.Missing, name)
		}
	}

	content, err := shared.RenderContent(src, vars, cfg.MissingMacro)
	var miss *MissingError
	if errors.As(err, &miss) {
		var fe *FieldError
		if errors.As(err, &fe) {
			p.Problems = append(p.Problems, fe.Error())
		}
		content, err = shared.RenderContent(src, vars, MissingKeep)
	}
	if err != nil {
		return Preview{}, err
	}
	p.Content = content

	switch p.Channel {
	case actions.ChannelEmail:
		if a.Template != "" {
			p.TemplateID = a.Template
			p.DynamicTemplateData = vars
		} else if content.HTML == "" && content.Text == "" {
			p.Problems = append(p.Problems, "the action has neither a dynamic template nor content for this email")
		}
	case actions.ChannelSMS:
		info, err := CheckSMS(content.Body, lim.SMSMaxSegments)
		p.SMS = &info
		if err != nil {
			p.Problems = append(p.Problems, err.Error())
		}
	case actions.ChannelPush:
		size, err := CheckPush(content.Title, content.Body, content.Data, lim.PushMaxPayloadBytes)
		p.PushPayloadBytes = size
		if err != nil {
			p.Problems = append(p.Problems, err.Error())
		}
	}
	return p, nil
}

// requiredMacros is the union, in field order, of the macros each field
// prints unconditionally.
func requiredMacros(c actions.Content) ([]string, error) {
	fields := []struct {
		name, src string
		mode      Mode
	}{{"subject", c.Subject, Text}, {"html", c.HTML, HTML}, {"text", c.Text, Text}, {"title", c.Title, Text}, {"body", c.Body, Text}}
	keys := make([]string, 0, len(c.Data))
	for k := range c.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fields = append(fields, struct {
			name, src string
			mode      Mode
		}{"data." + k, c.Data[k], Text})
	}
	out := []string{}
	seen := map[string]bool{}
	for _, f := range fields {
		if f.src == "" {
			continue
		}
		t, err := shared.Compile(f.src, f.mode)
		if err != nil {
			return nil, &FieldError{Field: f.name, Err: err}
		}
		for _, m := range t.Macros() {
			if !seen[m] {
				seen[m] = true
				out = append(out, m)
			}
		}
	}
	return out, nil
}

// VariantFor names the locale variant ContentFor picks for locale: the
// exact locale, else its language, else "" (the default content).
func VariantFor(cfg actions.Config, locale string) string {
	if locale == "" {
		return ""
	}
	if _, ok := cfg.Locales[locale]; ok {
		return locale
	}
	for i, r := range locale {
		if r == '_' || r == '-' {
			if _, ok := cfg.Locales[locale[:i]]; ok {
				return locale[:i]
			}
			break
		}
	}
	return ""
}
