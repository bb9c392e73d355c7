// Package message declares the rendered message: what package render
// produces and the channels send. It is a leaf (it imports no package of the
// module) so the render side can produce it and the providers consume it
// without either reaching the other, nor the channels reaching the action
// model that render reads (rules render-no-channels and
// channels-no-config-domain, docs/architecture.md).
package message

import "encoding/json"

// The channels a Message goes out on: the values of Message.Channel, which
// deliveries record and the channels key their providers by. Declared once
// here, in the leaf both sides may import: channels names its providers by
// them and actions maps a configName to one, without either importing the
// other (render-no-channels, channels-no-config-domain).
const (
	Email = "email"
	SMS   = "sms"
	Push  = "push"
	// Webhook is a typed event POSTed to the collection's own webhook
	// endpoints (docs/webhooks.md, "The webhook channel").
	Webhook = "webhook"
)

// Address is an email recipient or sender.
type Address struct {
	Email string `json:"email"`
	Name  string `json:"name,omitempty"`
}

// Message is one delivery, rendered and ready for a provider. Which fields
// are set depends on Channel.
type Message struct {
	DeliveryID     int64  `json:"deliveryId"`
	NotificationID int64  `json:"notificationId"`
	CollectionID   int64  `json:"collectionId"`
	ActionID       int64  `json:"actionId"`
	Channel        string `json:"channel"` // email | sms | push | webhook

	// Email. TemplateID set: SendGrid renders the dynamic template with
	// DynamicData; otherwise Subject/HTML/Text are already rendered.
	From        Address           `json:"from,omitempty"`
	To          []Address         `json:"to,omitempty"`
	Cc          []Address         `json:"cc,omitempty"`
	Bcc         []Address         `json:"bcc,omitempty"`
	Subject     string            `json:"subject,omitempty"`
	HTML        string            `json:"html,omitempty"`
	Text        string            `json:"text,omitempty"`
	TemplateID  string            `json:"templateId,omitempty"`
	DynamicData map[string]string `json:"dynamicData,omitempty"`
	// Headers are extra email headers (List-Unsubscribe and
	// List-Unsubscribe-Post for a one-click unsubscribe, RFC 8058).
	Headers map[string]string `json:"headers,omitempty"`

	// SMS.
	Phone               string `json:"phone,omitempty"`
	SMSFrom             string `json:"smsFrom,omitempty"`
	MessagingServiceSID string `json:"messagingServiceSid,omitempty"`

	// SMS and push body; push title, data and device token.
	Body      string            `json:"body,omitempty"`
	Title     string            `json:"title,omitempty"`
	Data      map[string]string `json:"data,omitempty"`
	PushToken string            `json:"pushToken,omitempty"`

	// Webhook: the endpoint the action names (0: every ACTIVE endpoint of
	// the collection that takes the event type), the notification's name,
	// the recipient as the producer sent it (without its macros) and the
	// macros; Body is the rendered body template, "" when the action has
	// none.
	WebhookID    int64             `json:"webhookId,omitempty"`
	Notification string            `json:"notification,omitempty"`
	Recipient    json.RawMessage   `json:"recipient,omitempty"`
	Macros       map[string]string `json:"macros,omitempty"`
}
