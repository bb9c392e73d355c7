// Package preview renders an action's content for one recipient as the
// dispatcher sends it — locale variant, macros, escaping, missing-macro
// policy — and says what would stop the send, without sending anything.
package preview

import (
	"errors"
	"sort"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/macros"
)

// Content renders every field of c with vars: HTML in HTML mode, the
// subject, text, title, body and data values in text mode. missing is the
// action's missing-macro policy. The first failure is returned as a
// *macros.FieldError wrapping the *macros.MissingError, *macros.TemplateError
// or *macros.LimitError. The render is bounded by the default RenderLimits.
func Content(c actions.Content, vars map[string]string, missing string) (actions.Content, error) {
	return ContentWithin(macros.NewBudget(macros.RenderLimits{}), c, vars, missing)
}

// ContentWithin is Content with every field rendered within b: one message,
// one budget, as the dispatcher renders it.
func ContentWithin(b *macros.Budget, c actions.Content, vars map[string]string, missing string) (actions.Content, error) {
	var out actions.Content
	for _, f := range fields(c) {
		s, err := b.Render(f.src, vars, f.mode, missing)
		if err != nil {
			return actions.Content{}, &macros.FieldError{Field: f.name, Err: err}
		}
		switch f.name {
		case "subject":
			out.Subject = s
		case "html":
			out.HTML = s
		case "text":
			out.Text = s
		case "title":
			out.Title = s
		case "body":
			out.Body = s
		default:
			if out.Data == nil {
				out.Data = make(map[string]string, len(c.Data))
			}
			out.Data[f.name[len("data."):]] = s
		}
	}
	return out, nil
}

// ForRecipient renders an action's content for a recipient: the locale
// variant chosen by cfg.ContentFor (fr_CA → fr → the default), under the
// action's missing-macro policy.
func ForRecipient(cfg actions.Config, locale string, vars map[string]string) (actions.Content, error) {
	return Content(cfg.ContentFor(locale), vars, cfg.MissingMacro)
}

type field struct {
	name, src string
	mode      macros.Mode
}

// fields lists c's non-empty fields in a fixed order, data keys sorted.
func fields(c actions.Content) []field {
	all := []field{
		{"subject", c.Subject, macros.Text}, {"html", c.HTML, macros.HTML}, {"text", c.Text, macros.Text},
		{"title", c.Title, macros.Text}, {"body", c.Body, macros.Text},
	}
	keys := make([]string, 0, len(c.Data))
	for k := range c.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		all = append(all, field{"data." + k, c.Data[k], macros.Text})
	}
	out := all[:0]
	for _, f := range all {
		if f.src != "" || f.name[0] == 'd' { // a data value may be empty on purpose
			out = append(out, f)
		}
	}
	return out
}

// Result is an action rendered for one recipient without sending.
type Result struct {
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
	Macros           []string        `json:"macros"`
	Missing          []string        `json:"missing"`
	MissingPolicy    string          `json:"missingPolicy"`
	SMS              *macros.SMSInfo `json:"sms,omitempty"`
	PushPayloadBytes int             `json:"pushPayloadBytes,omitempty"`
	// Problems say why this recipient's delivery would fail (a missing
	// macro under the fail policy, content over a limit). Empty: it would
	// be sent.
	Problems []string `json:"problems"`
}

// Action renders a for a recipient with locale and vars, as the dispatcher
// would, within lim.Render, and reports what would stop the send. Missing
// macros under the fail policy render as their placeholders and are listed
// in Problems. A template that does not parse, or a render over a limit
// (errors.Is macros.ErrRenderLimit), is an error: a *macros.FieldError
// wrapping the *macros.TemplateError or *macros.LimitError.
func Action(a actions.Action, locale string, vars map[string]string, lim macros.Limits) (Result, error) {
	cfg := a.Config
	p := Result{
		Channel: a.Channel(), Locale: locale, Variant: Variant(cfg, locale),
		MissingPolicy: cfg.MissingMacro, Macros: []string{}, Missing: []string{}, Problems: []string{},
	}
	if p.MissingPolicy == "" {
		p.MissingPolicy = macros.MissingFail
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

	seen := map[string]bool{}
	for _, f := range fields(src) {
		t, err := macros.Compile(f.src, f.mode)
		if err != nil {
			return Result{}, &macros.FieldError{Field: f.name, Err: err}
		}
		for _, m := range t.Macros() {
			if seen[m] {
				continue
			}
			seen[m] = true
			p.Macros = append(p.Macros, m)
			if _, ok := vars[m]; !ok {
				p.Missing = append(p.Missing, m)
			}
		}
	}

	content, err := ContentWithin(macros.NewBudget(lim.Render), src, vars, cfg.MissingMacro)
	var miss *macros.MissingError
	if errors.As(err, &miss) {
		p.Problems = append(p.Problems, err.Error())
		content, err = ContentWithin(macros.NewBudget(lim.Render), src, vars, macros.MissingKeep)
	}
	if err != nil {
		return Result{}, err
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
		info, err := macros.CheckSMS(content.Body, lim.SMSMaxSegments)
		p.SMS = &info
		if err != nil {
			p.Problems = append(p.Problems, err.Error())
		}
	case actions.ChannelPush:
		size, err := macros.CheckPush(content.Title, content.Body, content.Data, lim.PushMaxPayloadBytes)
		p.PushPayloadBytes = size
		if err != nil {
			p.Problems = append(p.Problems, err.Error())
		}
	}
	return p, nil
}

// Variant names the locale variant ContentFor picks for locale: the exact
// locale, else its language, else "" (the default content).
func Variant(cfg actions.Config, locale string) string {
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
