// Package actions owns actions, the channel configuration each carries, and
// the rule that picks the actions an event fires.
package actions

import (
	"bytes"
	"database/sql/driver"
	"encoding/json"
	"errors"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/condition"
	"github.com/notificationservice/notificationservice/internal/message"
	"github.com/notificationservice/notificationservice/internal/store"
)

// Config names: which channel an action sends on.
const (
	ConfigEmail = "SendEmailConfig"
	ConfigSMS   = "SendSmsConfig"
	ConfigPush  = "SendPushConfig"
	// ConfigWebhook sends the notification to the collection's own webhook
	// endpoints as a NOTIFICATION_WEBHOOK event (docs/webhooks.md).
	ConfigWebhook = "SendWebhookConfig"
)

// Statuses shared by collections, events and actions.
const (
	StatusActive   = "ACTIVE"
	StatusInactive = "INACTIVE"
)

// Channel names, as deliveries record them: the action model's names for
// the message package's, where they are declared once (channels uses the
// same constants).
const (
	ChannelEmail   = message.Email
	ChannelSMS     = message.SMS
	ChannelPush    = message.Push
	ChannelWebhook = message.Webhook
)

// ChannelOf maps a configName to its channel ("" when unknown).
func ChannelOf(configName string) string {
	switch configName {
	case ConfigEmail:
		return ChannelEmail
	case ConfigSMS:
		return ChannelSMS
	case ConfigPush:
		return ChannelPush
	case ConfigWebhook:
		return ChannelWebhook
	}
	return ""
}

// Action is one thing an event fires: a send on one channel. The JSON names,
// and their order, are the event catalogue's; config follows template.
type Action struct {
	ID           int64  `json:"id" gorm:"primaryKey"`
	CollectionID int64  `json:"collectionId"`
	Name         string `json:"name"`
	Status       string `json:"status"`
	Description  string `json:"description"`
	EventID      int64  `json:"eventId"`
	ConfigName   string `json:"configName"`
	// Template is a SendGrid dynamic template id (d-…) for email actions that
	// render at SendGrid, or empty when Config carries inline content.
	Template string `json:"template"`
	Config   Config `json:"config"`
	Version  int64  `json:"-"`
	// Timezone is the collection's default zone (IANA), filled in by
	// ForSend for the send-time rules; not stored with the action.
	Timezone string `json:"-" gorm:"-"`
	// EventRequired is its event's required flag (opt-outs do not apply),
	// filled in by ForSend: a required event's emails carry no unsubscribe
	// link. Not stored with the action.
	EventRequired bool   `json:"-" gorm:"-"`
	CreatedBy     string `json:"-"`
	UpdatedBy     string `json:"-"`
	UpdatedTime   int64  `json:"updatedTime"`
	CreatedTime   int64  `json:"createdTime"`

	compiled *Compiled // Config.Condition, compiled when the rule is loaded
}

// TableName is the actions table.
func (Action) TableName() string { return "actions" }

// Channel is the channel the action sends on.
func (a Action) Channel() string { return ChannelOf(a.ConfigName) }

// Content is what a channel renders: email uses Subject/HTML/Text, SMS uses
// Body, push uses Title/Body/Data. Every string may hold {{MACRO}} placeholders.
type Content struct {
	Subject string            `json:"subject,omitempty"`
	HTML    string            `json:"html,omitempty"`
	Text    string            `json:"text,omitempty"`
	Title   string            `json:"title,omitempty"`
	Body    string            `json:"body,omitempty"`
	Data    map[string]string `json:"data,omitempty"`
}

// Missing-macro policies.
const (
	MissingFail  = "fail"  // fail the delivery, naming the macro (the default)
	MissingBlank = "blank" // substitute an empty string
	MissingKeep  = "keep"  // leave the {{MACRO}} placeholder as it is
)

// Condition is an action's config.condition: an expr-lang expression over
// the environment of package condition (docs/rules.md) that must be true
// for a recipient to get the action; "" lets everyone through.
//
// The object form of earlier versions, {"macro": "TIER", "equals": "gold"},
// is still accepted, in requests and in stored rows alike: it is translated
// to the equivalent expression (condition.FromMacro) when it is decoded, so
// an action saved with it reads back, and is published, as a string.
type Condition string

// UnmarshalJSON accepts a string, null, or the object form.
func (c *Condition) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case string(b) == "null":
		*c = ""
		return nil
	case len(b) > 0 && b[0] == '{':
		var old struct {
			Macro  string `json:"macro"`
			Equals string `json:"equals"`
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&old); err != nil {
			return conditionError(`the object form is {"macro": "NAME", "equals": "value"}; prefer an expression string`)
		}
		if !macroName.MatchString(old.Macro) {
			return conditionError("the object form needs a macro name such as FNAME in macro")
		}
		*c = Condition(condition.FromMacro(old.Macro, old.Equals))
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return conditionError("must be a string holding an expression, or the object form {macro, equals}")
	}
	*c = Condition(s)
	return nil
}

// conditionError is a condition that cannot be decoded: a field error the
// API answers as 400 on config.condition (the decoder of the config
// prefixes the field with config.).
func conditionError(reason string) error {
	return apperr.Invalid("request has invalid fields", apperr.Detail{Field: "condition", Reason: reason})
}

// Compiled is a condition compiled once, when its rule is loaded: the
// program, or why the stored expression does not compile (a rule saved
// before a change of the environment); planning skips with that error.
type Compiled struct {
	Program *condition.Program
	Err     error
}

// compile compiles src; nil for no condition.
func compile(src string) *Compiled {
	if src == "" {
		return nil
	}
	p, err := condition.Compile(src)
	return &Compiled{Program: p, Err: err}
}

// CompiledCondition returns the action's condition compiled: the copy the
// rule was loaded with (Rules.Resolve compiles it once per action version,
// and the cache keeps it), or a fresh compile for an action built by hand.
// nil when the action has none.
func (a *Action) CompiledCondition() *Compiled {
	if a.compiled != nil || a.Config.Condition == "" {
		return a.compiled
	}
	return compile(string(a.Config.Condition))
}

// Config is an action's channel settings: the default content, its locale
// variants, the sender, and the policies that shape rendering.
type Config struct {
	Content
	// Locales holds per-locale overrides keyed by locale (fr_CA, fr, en_US);
	// a recipient's locale falls back fr_CA → fr → the default Content.
	Locales map[string]Content `json:"locales,omitempty"`

	FromEmail           string `json:"fromEmail,omitempty"`           // email sender (else the collection/service default)
	FromName            string `json:"fromName,omitempty"`            // email sender name
	From                string `json:"from,omitempty"`                // SMS sender number (E.164)
	MessagingServiceSID string `json:"messagingServiceSid,omitempty"` // Twilio Messaging Service, instead of From

	// WebhookID names the one endpoint a SendWebhookConfig action sends
	// to; 0 (absent) sends to every ACTIVE endpoint of the collection that
	// takes NOTIFICATION_WEBHOOK events.
	WebhookID int64 `json:"webhookId,omitempty"`

	MissingMacro string    `json:"missingMacro,omitempty"` // fail | blank | keep
	Condition    Condition `json:"condition,omitempty"`
	// ConditionEvaluateAt is when Condition is evaluated: at planning
	// ("plan", the default, also "") or by the delivery worker just before
	// the send ("send"), so a delayed action can be "remind after 24 h
	// unless …" (docs/rules.md).
	ConditionEvaluateAt string `json:"conditionEvaluateAt,omitempty"`
	// InDoubt is what recovery does with a delivery whose last attempt is
	// in doubt (its worker stopped mid-send) when the provider cannot be
	// asked whether it accepted it: resend (the default; at least once) or
	// markUnknown (at most once: the delivery ends unknown).
	InDoubt string `json:"inDoubt,omitempty"`

	// QuietHours overrides the collection's quiet hours: absent, null
	// (none for this action) or a window (timing.go). ForSend fills an
	// absent one with the collection's.
	QuietHours QuietHours `json:"quietHours,omitzero"`
	// Urgent deliveries ignore quiet hours.
	Urgent bool `json:"urgent,omitempty"`
	// Throttle caps the deliveries per recipient per window; over it a
	// delivery is skipped (throttled).
	Throttle *Throttle `json:"throttle,omitempty"`
	// Delay postpones the action's deliveries: a duration after the
	// notification (its sendAt), or the timestamp a macro holds (Delay).
	Delay *Delay `json:"delay,omitempty"`
	// Digest gathers the action's deliveries to one recipient within a
	// window into one (digest.go).
	Digest *Digest `json:"digest,omitempty"`
}

// When an action's condition is evaluated (Config.ConditionEvaluateAt).
const (
	EvaluateAtPlan = "plan"
	EvaluateAtSend = "send"
)

// ConditionAtSend reports whether the action's condition is the delivery
// worker's to evaluate, at send time, rather than planning's.
func (c Config) ConditionAtSend() bool {
	return c.Condition != "" && c.ConditionEvaluateAt == EvaluateAtSend
}

// InDoubt policies (Config.InDoubt).
const (
	InDoubtResend      = "resend"
	InDoubtMarkUnknown = "markUnknown"
)

// Value stores Config as JSON text.
func (c Config) Value() (driver.Value, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

// Scan reads Config from JSON text; NULL or empty is the zero Config.
func (c *Config) Scan(src any) error {
	*c = Config{}
	return store.ScanJSON(src, c)
}

// ErrNotFound is returned when an action does not exist in the collection.
var ErrNotFound = errors.New("actions: not found")

// ContentFor returns the content for a recipient's locale. Each field comes
// from the most specific variant that sets it: the exact locale (fr_CA), then
// its language (fr), then the default content. So an fr_CA variant that only
// changes the subject still gets the French body.
func (c Config) ContentFor(locale string) Content {
	out := c.Content
	chain := localeChain(locale)
	for i := len(chain) - 1; i >= 0; i-- { // language first, exact locale last
		if v, ok := c.Locales[chain[i]]; ok {
			out = v.over(out)
		}
	}
	return out
}

func localeChain(locale string) []string {
	if locale == "" {
		return nil
	}
	chain := []string{locale}
	for i, r := range locale {
		if r == '_' || r == '-' {
			chain = append(chain, locale[:i])
			break
		}
	}
	return chain
}

// over fills v's empty fields from base.
func (v Content) over(base Content) Content {
	pick := func(a, b string) string {
		if a != "" {
			return a
		}
		return b
	}
	out := Content{
		Subject: pick(v.Subject, base.Subject),
		HTML:    pick(v.HTML, base.HTML),
		Text:    pick(v.Text, base.Text),
		Title:   pick(v.Title, base.Title),
		Body:    pick(v.Body, base.Body),
		Data:    v.Data,
	}
	if out.Data == nil {
		out.Data = base.Data
	}
	return out
}
