// Package render turns an action, a recipient and the recipient's locale and
// macros into the message its channel sends, within the render limits. It
// is the one place the sending rules live: the locale variant (fr_CA → fr →
// the default content), the fields each channel sends and their fallbacks
// (an SMS sends its body, else its text; an email's plain part is its text,
// else its body), the sender (the action's, else its collection's default,
// else the service's), the missing-macro policy, HTML escaping in HTML
// bodies, and one macros.Budget per message. The delivery workers, the
// preview route and the test-send route all call Message, so what a preview
// shows is what a send sends.
//
// Rendering is pure: the package reaches no provider and no queue
// (render-no-channels, docs/architecture.md). The message it produces is
// package message's, which the channels send.
package render

import (
	"fmt"
	"maps"
	"slices"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/macros"
	"github.com/notificationservice/notificationservice/internal/message"
)

// Recipient is who one message goes to and what it is rendered with.
type Recipient struct {
	To, Cc, Bcc []message.Address // email
	Phone       string            // SMS
	PushToken   string            // push
	// Locale picks the content variant (fr_CA, else fr, else the default).
	Locale string
	Macros map[string]string
	// Extra are values the templates see beside the macros: a digest's
	// items and count (delivery's digest). nil for a plain delivery.
	Extra map[string]any
	// Unsubscribe is the recipient's one-click unsubscribe link, for an
	// email of an event that is not required; zero: none.
	Unsubscribe Unsubscribe
}

// Unsubscribe is a one-click unsubscribe link (RFC 8058): an email that has
// one carries it in List-Unsubscribe (with Mailto, when set) and
// List-Unsubscribe-Post, and its templates can show it as
// {{unsubscribeUrl}}. The delivery workers make it (a signed token); render
// only places it.
type Unsubscribe struct {
	URL    string
	Mailto string // an address, without "mailto:"
	// Withheld marks an email of a required event (opt-outs do not apply):
	// no link and no headers, and {{unsubscribeUrl}} renders empty rather
	// than as a missing macro.
	Withheld bool
}

// UnsubscribeMacro is the macro that holds the unsubscribe link.
const UnsubscribeMacro = "unsubscribeUrl"

// Email headers of a one-click unsubscribe (RFC 2369, RFC 8058).
const (
	HeaderListUnsubscribe     = "List-Unsubscribe"
	HeaderListUnsubscribePost = "List-Unsubscribe-Post"
	OneClick                  = "List-Unsubscribe=One-Click"
)

// headers are the List-Unsubscribe headers of u.
func (u Unsubscribe) headers() map[string]string {
	v := "<" + u.URL + ">"
	if u.Mailto != "" {
		v += ", <mailto:" + u.Mailto + "?subject=unsubscribe>"
	}
	return map[string]string{HeaderListUnsubscribe: v, HeaderListUnsubscribePost: OneClick}
}

// Senders are the service's default senders (channels.sendgrid.from*,
// channels.twilio.from / messagingServiceSid), used when neither the action
// nor its collection names one.
type Senders struct {
	Email               message.Address
	SMSFrom             string
	MessagingServiceSID string
}

// EmptyError is a message with nothing to send (an email with neither a
// dynamic template nor content, an SMS without a body). Retrying cannot fix
// it: the action must change.
type EmptyError struct{ Reason string }

func (e *EmptyError) Error() string { return e.Reason }

// Message renders a's message for rc. a is the action as a send uses it:
// with its collection's default sender filled in when its config names none
// (actions.Rules.ForSend); s is the service's default, used last. Every
// field renders within one budget of lim, so a message cannot multiply a
// limit by its number of fields.
//
// A field that fails returns a *macros.FieldError naming it and wrapping
// the *macros.MissingError (a missing macro under the fail policy), the
// *macros.TemplateError or the *macros.LimitError (errors.Is
// macros.ErrRenderLimit); the fields after it are not rendered. A message
// with nothing to send returns an *EmptyError. The returned Message carries
// the channel, collection and action ids; the caller adds the delivery's.
func Message(a actions.Action, rc Recipient, s Senders, lim macros.RenderLimits) (message.Message, error) {
	m := message.Message{Channel: a.Channel(), CollectionID: a.CollectionID, ActionID: a.ID}
	fields, err := Fields(a, rc.Locale)
	if err != nil {
		return m, err
	}
	unsub := rc.Unsubscribe.URL != "" && m.Channel == actions.ChannelEmail
	if unsub || (rc.Unsubscribe.Withheld && m.Channel == actions.ChannelEmail) {
		vars := make(map[string]string, len(rc.Macros)+1)
		maps.Copy(vars, rc.Macros)
		vars[UnsubscribeMacro] = rc.Unsubscribe.URL
		rc.Macros = vars
	}
	out, err := renderFields(macros.NewBudget(lim).With(rc.Extra), fields, rc.Macros, a.Config.MissingMacro)
	fill(&m, fields, out)
	switch m.Channel {
	case actions.ChannelEmail:
		m.From = s.Email
		if a.Config.FromEmail != "" {
			m.From = message.Address{Email: a.Config.FromEmail, Name: a.Config.FromName}
		}
		m.To, m.Cc, m.Bcc = rc.To, rc.Cc, rc.Bcc
		if unsub {
			m.Headers = rc.Unsubscribe.headers()
		}
		if a.Template != "" {
			m.TemplateID, m.DynamicData = a.Template, rc.Macros
		}
		if err == nil && m.TemplateID == "" && m.HTML == "" && m.Text == "" {
			err = &EmptyError{Reason: "the action has neither a template nor content for this email"}
		}
	case actions.ChannelSMS:
		m.Phone = rc.Phone
		// The sender is a pair: an action's From never goes with the
		// service's Messaging Service, nor the reverse.
		m.SMSFrom, m.MessagingServiceSID = s.SMSFrom, s.MessagingServiceSID
		if a.Config.From != "" || a.Config.MessagingServiceSID != "" {
			m.SMSFrom, m.MessagingServiceSID = a.Config.From, a.Config.MessagingServiceSID
		}
		if err == nil && m.Body == "" {
			err = &EmptyError{Reason: "the action has no SMS body"}
		}
	case actions.ChannelPush:
		m.PushToken = rc.PushToken
	case actions.ChannelWebhook:
		// The event carries the macros whatever the body; the caller adds
		// the notification's name and the recipient.
		m.WebhookID, m.Macros = a.Config.WebhookID, rc.Macros
	}
	return m, err
}

// Field is one template of an action's content, as its channel sends it.
type Field struct {
	// Name is the content field the template comes from (subject, html,
	// text, title, body, data.KEY): what config.<Name> names in an error.
	Name   string
	Source string
	Mode   macros.Mode // HTML for the html field: macro values are escaped
	part   part
	key    string // the data key, for partData
}

// part is where a rendered field goes in the message.
type part int

const (
	partSubject part = iota
	partHTML
	partText
	partTitle
	partBody
	partData
)

// Fields lists the templates a's channel sends for locale, in the order
// they render: the content of the locale's variant (actions.Config.ContentFor),
// with each channel's fallback applied. Empty templates are left out, but a
// push data value may be empty on purpose and is kept.
func Fields(a actions.Action, locale string) ([]Field, error) {
	c := a.Config.ContentFor(locale)
	var all []Field
	switch a.Channel() {
	case actions.ChannelEmail:
		all = []Field{{Name: "subject", Source: c.Subject, part: partSubject}, {Name: "html", Source: c.HTML, Mode: macros.HTML, part: partHTML}}
		// The plain part is the text, else the body (an action written for
		// SMS and email alike).
		if c.Text != "" {
			all = append(all, Field{Name: "text", Source: c.Text, part: partText})
		} else {
			all = append(all, Field{Name: "body", Source: c.Body, part: partText})
		}
	case actions.ChannelSMS:
		// An SMS sends the body, else the text.
		if c.Body != "" {
			all = []Field{{Name: "body", Source: c.Body, part: partBody}}
		} else {
			all = []Field{{Name: "text", Source: c.Text, part: partBody}}
		}
	case actions.ChannelPush:
		all = []Field{{Name: "title", Source: c.Title, part: partTitle}, {Name: "body", Source: c.Body, part: partBody}}
		all = append(all, dataFields(c.Data)...)
	case actions.ChannelWebhook:
		// The optional body template, rendered as text: the receiver gets it
		// as a JSON string, which escapes it.
		all = []Field{{Name: "body", Source: c.Body, part: partBody}}
	default:
		return nil, fmt.Errorf("unknown configName %q", a.ConfigName)
	}
	return slices.DeleteFunc(all, func(f Field) bool { return f.Source == "" && f.part != partData }), nil
}

// dataFields lists a push's data values, keys sorted so the first failure
// is the same on every render.
func dataFields(data map[string]string) []Field {
	out := make([]Field, 0, len(data))
	for _, k := range slices.Sorted(maps.Keys(data)) {
		out = append(out, Field{Name: "data." + k, Source: data[k], part: partData, key: k})
	}
	return out
}

// renderFields renders fields in order within b under the missing-macro
// policy missing, stopping at the first failure, which it returns as a
// *macros.FieldError.
func renderFields(b *macros.Budget, fields []Field, vars map[string]string, missing string) ([]string, error) {
	out := make([]string, len(fields))
	for i, f := range fields {
		if f.Source == "" {
			continue
		}
		s, err := b.Render(f.Source, vars, f.Mode, missing)
		if err != nil {
			return out, &macros.FieldError{Field: f.Name, Err: err}
		}
		out[i] = s
	}
	return out, nil
}

// fill puts each field's output where its part goes in m.
func fill(m *message.Message, fields []Field, out []string) {
	for i, f := range fields {
		switch f.part {
		case partSubject:
			m.Subject = out[i]
		case partHTML:
			m.HTML = out[i]
		case partText:
			m.Text = out[i]
		case partTitle:
			m.Title = out[i]
		case partBody:
			m.Body = out[i]
		case partData:
			if m.Data == nil {
				m.Data = make(map[string]string)
			}
			m.Data[f.key] = out[i]
		}
	}
}

// Content renders every field of c with vars, whatever the channel: html in
// HTML mode, the others in text mode, under the missing-macro policy
// missing. The first failure is returned as a *macros.FieldError. The
// render is bounded by the default RenderLimits. The golden files of
// package macros are made with it.
func Content(c actions.Content, vars map[string]string, missing string) (actions.Content, error) {
	fields := []Field{
		{Name: "subject", Source: c.Subject, part: partSubject}, {Name: "html", Source: c.HTML, Mode: macros.HTML, part: partHTML},
		{Name: "text", Source: c.Text, part: partText}, {Name: "title", Source: c.Title, part: partTitle},
		{Name: "body", Source: c.Body, part: partBody},
	}
	fields = append(fields, dataFields(c.Data)...)
	out, err := renderFields(macros.NewBudget(macros.RenderLimits{}), fields, vars, missing)
	if err != nil {
		return actions.Content{}, err
	}
	var m message.Message
	fill(&m, fields, out)
	return actions.Content{Subject: m.Subject, HTML: m.HTML, Text: m.Text, Title: m.Title, Body: m.Body, Data: m.Data}, nil
}

// ForRecipient is Content for the locale variant cfg.ContentFor picks, under
// cfg's missing-macro policy.
func ForRecipient(cfg actions.Config, locale string, vars map[string]string) (actions.Content, error) {
	return Content(cfg.ContentFor(locale), vars, cfg.MissingMacro)
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

// Fit is how a rendered message measures against its channel's limits.
type Fit struct {
	SMS              *macros.SMSInfo // SMS: encoding and segments
	PushPayloadBytes int             // push: the payload FCM counts
}

// Measure checks m against lim's channel limits, as the channels check them
// before sending (channels.twilio.maxSegments, channels.fcm.maxPayloadBytes):
// the error, a *macros.LimitError, says why the provider would refuse it.
func Measure(m message.Message, lim macros.Limits) (Fit, error) {
	var fit Fit
	switch m.Channel {
	case actions.ChannelSMS:
		info, err := macros.CheckSMS(m.Body, lim.SMSMaxSegments)
		fit.SMS = &info
		return fit, err
	case actions.ChannelPush:
		size, err := macros.CheckPush(m.Title, m.Body, m.Data, lim.PushMaxPayloadBytes)
		fit.PushPayloadBytes = size
		return fit, err
	}
	return fit, nil
}
