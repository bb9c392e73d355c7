package actions

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/condition"
	"github.com/notificationservice/notificationservice/internal/macros"
)

// Limits on free-text fields, in characters.
const (
	MaxNameLen        = 128
	MaxDescriptionLen = 1024
	MaxTemplateLen    = 128
	MaxFromNameLen    = 256
)

var (
	// sendGridTemplate is the form of a SendGrid dynamic template id.
	sendGridTemplate = regexp.MustCompile(`^d-[0-9a-f]{32}$`)
	// e164 is an international phone number: +, country code, at most 15 digits.
	e164 = regexp.MustCompile(`^\+[1-9][0-9]{1,14}$`)
	// messagingService is a Twilio Messaging Service SID.
	messagingService = regexp.MustCompile(`^MG[0-9a-f]{32}$`)
	// localeKey is a language (fr) or a language and region (fr_CA): the keys
	// ContentFor's fallback chain tries.
	localeKey = regexp.MustCompile(`^[a-z]{2,3}(_[A-Z]{2})?$`)
	// macroName is the placeholder name package macros substitutes.
	macroName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)
)

// validate checks a whole action (a create, or an update after the patch is
// merged) and records every problem; it needs no database. Whether EventID
// names an event of the collection is the service's check.
func validate(a Action, f *apperr.Fields, lim macros.RenderLimits) {
	checkName(f, a.Name)
	f.MaxLen("description", a.Description, MaxDescriptionLen)
	f.OneOf("status", a.Status, StatusActive, StatusInactive)
	if a.EventID <= 0 {
		f.Add("eventId", "is required")
	}
	if !f.Required("configName", a.ConfigName) {
		return
	}
	switch a.ConfigName {
	case ConfigEmail, ConfigSMS, ConfigPush, ConfigWebhook:
	default:
		f.OneOf("configName", a.ConfigName, ConfigEmail, ConfigSMS, ConfigPush, ConfigWebhook)
		return // the channel rules below depend on a known configName
	}
	checkTemplate(f, a.ConfigName, a.Template)
	checkConfig(f, a.ConfigName, a.Template, a.Config)
	checkContent(f, "config.", a.Config.Content, lim)
	for _, k := range slices.Sorted(maps.Keys(a.Config.Locales)) {
		if localeKey.MatchString(k) {
			checkContent(f, "config.locales."+k+".", a.Config.Locales[k], lim)
		}
	}
}

// checkContent refuses the templates of c that cannot be stored: one that
// does not parse, or one macros.Check finds pathological (too large, blocks
// nested too deep, a loop inside a loop, a partial, {{log}}). What only a
// render can tell is bounded when the delivery renders.
func checkContent(f *apperr.Fields, prefix string, c Content, lim macros.RenderLimits) {
	check := func(field, src string) {
		err := macros.Check(src, lim)
		var le *macros.LimitError
		var te *macros.TemplateError
		switch {
		case errors.As(err, &le):
			f.Add(prefix+field, "the template "+le.Reason)
		case errors.As(err, &te):
			f.Add(prefix+field, "the template does not parse: "+te.Err.Error())
		}
	}
	for _, fl := range []struct{ name, src string }{
		{"subject", c.Subject}, {"html", c.HTML}, {"text", c.Text}, {"title", c.Title}, {"body", c.Body},
	} {
		if fl.src != "" {
			check(fl.name, fl.src)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(c.Data)) {
		check("data."+k, c.Data[k])
	}
}

// checkName requires a name that is not blank, fits the limit, and has no
// surrounding whitespace that nobody could see in a listing.
func checkName(f *apperr.Fields, name string) {
	if strings.TrimSpace(name) == "" {
		f.Add("name", "is required")
		return
	}
	if strings.TrimSpace(name) != name {
		f.Add("name", "must not start or end with whitespace")
	}
	f.MaxLen("name", name, MaxNameLen)
}

func checkTemplate(f *apperr.Fields, configName, tmpl string) {
	if tmpl == "" {
		return
	}
	if configName != ConfigEmail {
		f.Add("template", fmt.Sprintf("must be empty for %s: its content goes in config", configName))
		return
	}
	if strings.HasPrefix(strings.ToLower(tmpl), "d-") && !sendGridTemplate.MatchString(tmpl) {
		f.Add("template", "a SendGrid dynamic template id must be d- followed by 32 lowercase hex characters")
		return
	}
	f.MaxLen("template", tmpl, MaxTemplateLen)
}

func checkConfig(f *apperr.Fields, configName, tmpl string, c Config) {
	switch configName {
	case ConfigEmail:
		if tmpl == "" {
			// Without a SendGrid template the action renders its own email.
			if c.Subject == "" {
				f.Add("config.subject", "is required when template is empty")
			}
			if c.HTML == "" && c.Text == "" {
				f.Add("config.html", "config.html or config.text is required when template is empty")
			}
		}
	case ConfigSMS:
		if c.Body == "" {
			f.Add("config.body", "is required for "+ConfigSMS)
		}
	case ConfigPush:
		if c.Title == "" && c.Body == "" {
			f.Add("config.title", "config.title or config.body is required for "+ConfigPush)
		}
	case ConfigWebhook:
		// The event carries the name, the recipient and the macros; a body
		// is optional. Whether webhookId is an endpoint of the collection is
		// the service's check.
		if c.WebhookID < 0 {
			f.Add("config.webhookId", "must be a webhook id of the collection (a positive integer), or absent for all its endpoints")
		}
		for _, fl := range []struct{ name, v string }{{"subject", c.Subject}, {"html", c.HTML}, {"text", c.Text}, {"title", c.Title}} {
			if fl.v != "" {
				f.Add("config."+fl.name, "is not used by "+ConfigWebhook+": its optional template is config.body")
			}
		}
	}
	if c.WebhookID != 0 && configName != ConfigWebhook {
		f.Add("config.webhookId", "is only for "+ConfigWebhook)
	}
	if c.MissingMacro != "" {
		f.OneOf("config.missingMacro", c.MissingMacro, MissingFail, MissingBlank, MissingKeep)
	}
	checkTiming(f, c)
	checkDigest(f, c)
	if c.InDoubt != "" {
		f.OneOf("config.inDoubt", c.InDoubt, InDoubtResend, InDoubtMarkUnknown)
	}
	if c.From != "" && !e164.MatchString(c.From) {
		f.Add("config.from", "must be an E.164 phone number such as +14155550100")
	}
	if c.MessagingServiceSID != "" && !messagingService.MatchString(c.MessagingServiceSID) {
		f.Add("config.messagingServiceSid", "must be a Twilio Messaging Service SID: MG followed by 32 lowercase hex characters")
	}
	if c.FromEmail != "" {
		f.Email("config.fromEmail", c.FromEmail)
	}
	f.MaxLen("config.fromName", c.FromName, MaxFromNameLen)
	keys := make([]string, 0, len(c.Locales))
	for k := range c.Locales {
		keys = append(keys, k)
	}
	sort.Strings(keys) // stable details for a stable response
	for _, k := range keys {
		if !localeKey.MatchString(k) {
			f.Add("config.locales."+k, "must be a language such as fr or a locale such as fr_CA")
		}
	}
	if d := c.Delay; d != nil {
		switch {
		case d.bad:
			f.Add("config.delay", `must be a Go duration such as "10m" or "24h", {"macro": "NAME"}: a macro holding a timestamp, or {"data": "field"}: a field of the notification's data holding one`)
		case d.Macro != "" && !macroName.MatchString(d.Macro):
			f.Add("config.delay.macro", "must be a macro name such as REMIND_AT")
		case d.Data != "" && (len(d.Data) > 255 || !apperr.ValidText(d.Data)):
			f.Add("config.delay.data", "must be a field name of at most 255 characters")
		case d.Macro == "" && d.Data == "" && (d.Duration <= 0 || d.Duration > MaxDelay):
			f.Add("config.delay", fmt.Sprintf("must be a positive duration of at most %s", MaxDelay))
		}
	}
	CheckCondition(f, "config.condition", string(c.Condition))
	switch c.ConditionEvaluateAt {
	case "", EvaluateAtPlan:
	case EvaluateAtSend:
		if c.Condition == "" {
			f.Add("config.conditionEvaluateAt", "send needs a config.condition to evaluate")
		}
	default:
		f.Add("config.conditionEvaluateAt", `must be "plan" (the default) or "send"`)
	}
}

// CheckCondition records why src, a condition of an action or an event, does
// not compile: the expression's error and its position (line and column).
// "" is no condition.
func CheckCondition(f *apperr.Fields, field, src string) {
	if src == "" {
		return
	}
	if _, err := condition.Compile(src); err != nil {
		f.Add(field, "is not a valid condition: "+err.Error())
	}
}

func (fl Filter) validate() error {
	var f apperr.Fields
	if fl.EventID < 0 {
		f.Add("eventId", "must be a positive integer")
	}
	if fl.Status != "" {
		f.OneOf("status", fl.Status, StatusActive, StatusInactive)
	}
	if fl.ConfigName != "" {
		f.OneOf("configName", fl.ConfigName, ConfigEmail, ConfigSMS, ConfigPush, ConfigWebhook)
	}
	return f.Err()
}

func (p Page) validate() error {
	var f apperr.Fields
	if p.Limit < 1 {
		f.Add("limit", "must be at least 1")
	}
	if p.After < 0 {
		f.Add("cursor", "must not be negative")
	}
	return f.Err()
}
