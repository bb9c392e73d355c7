// Package preview shows an action rendered for one recipient — what package
// render produces for the delivery workers — and says what would stop the
// send, without sending anything.
package preview

import (
	"errors"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/macros"
	"github.com/notificationservice/notificationservice/internal/render"
)

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
	// Headers are the extra email headers the send would carry: the
	// one-click List-Unsubscribe pair, with a sample link.
	Headers map[string]string `json:"headers,omitempty"`
}

// Action renders a for a recipient with locale and vars through
// render.Message, as the delivery workers do, within lim.Render, and
// reports what would stop the send. Missing macros under the fail policy
// render as their placeholders and are listed in Problems, as are a message
// with nothing to send and one over its channel's limits (render.Measure).
// A template that does not parse, or a render over a limit (errors.Is
// macros.ErrRenderLimit), is an error: a *macros.FieldError wrapping the
// *macros.TemplateError or *macros.LimitError. An email renders with
// unsubscribe (a sample link: {{unsubscribeUrl}} and the List-Unsubscribe
// headers show where a send puts them); zero: none.
func Action(a actions.Action, locale string, vars map[string]string, unsubscribe render.Unsubscribe, lim macros.Limits) (Result, error) {
	p := Result{
		Channel: a.Channel(), Locale: locale, Variant: render.Variant(a.Config, locale),
		MissingPolicy: a.Config.MissingMacro, Macros: []string{}, Missing: []string{}, Problems: []string{},
	}
	if p.MissingPolicy == "" {
		p.MissingPolicy = macros.MissingFail
	}
	fields, err := render.Fields(a, locale)
	if err != nil {
		return Result{}, err
	}
	seen := map[string]bool{}
	for _, f := range fields {
		t, err := macros.Compile(f.Source, f.Mode)
		if err != nil {
			return Result{}, &macros.FieldError{Field: f.Name, Err: err}
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

	rc := render.Recipient{Locale: locale, Macros: vars, Unsubscribe: unsubscribe}
	m, err := render.Message(a, rc, render.Senders{}, lim.Render)
	var miss *macros.MissingError
	if errors.As(err, &miss) {
		p.Problems = append(p.Problems, err.Error())
		a.Config.MissingMacro = macros.MissingKeep
		m, err = render.Message(a, rc, render.Senders{}, lim.Render)
	}
	var empty *render.EmptyError
	if errors.As(err, &empty) {
		p.Problems = append(p.Problems, err.Error())
		err = nil
	}
	if err != nil {
		return Result{}, err
	}
	p.Content = actions.Content{Subject: m.Subject, HTML: m.HTML, Text: m.Text, Title: m.Title, Body: m.Body, Data: m.Data}
	// A dynamic template is SendGrid's to render: shown as it goes there.
	p.TemplateID, p.DynamicTemplateData = m.TemplateID, m.DynamicData
	p.Headers = m.Headers

	fit, err := render.Measure(m, lim)
	p.SMS, p.PushPayloadBytes = fit.SMS, fit.PushPayloadBytes
	if err != nil && empty == nil { // an empty message says so once
		p.Problems = append(p.Problems, err.Error())
	}
	return p, nil
}
