// Package preferences owns what recipients asked for: per collection and
// recipient, opt-outs of an event, of a channel, or of an event on a
// channel (the preferences table), the routes' document, its merge, the
// planning rule that skips opted-out deliveries (rule.go) and the signed
// one-click unsubscribe links (unsubscribe.go). docs/rules.md, sections
// "Preferences" and "One-click unsubscribe".
package preferences

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/message"
)

// Channels are the channel names a document may name: the channels a
// delivery goes out on.
var Channels = []string{message.Email, message.SMS, message.Push}

// maxKeyLen bounds a recipient key and an event name, as the event name
// column does.
const maxKeyLen = 255

// Document is a recipient's preferences: false opts out, an absent entry is
// opted in. {"channels": {"sms": false}, "events": {"USER_INVITEUSER":
// {"enabled": false}, "ORDER_SHIPPED": {"channels": {"push": false}}}}.
type Document struct {
	Channels map[string]bool  `json:"channels"`
	Events   map[string]Event `json:"events"`
}

// Event is the preferences of one event (by its name).
type Event struct {
	// Enabled false opts out of the event on every channel; nil: opted in.
	Enabled  *bool           `json:"enabled,omitempty"`
	Channels map[string]bool `json:"channels,omitempty"`
}

// normalize gives d empty maps rather than nil ones, so the document always
// shows both keys.
func (d *Document) normalize() {
	if d.Channels == nil {
		d.Channels = map[string]bool{}
	}
	if d.Events == nil {
		d.Events = map[string]Event{}
	}
}

// validate names every unknown channel and every event name that is not
// valid text.
func (d Document) validate() error {
	var f apperr.Fields
	channels := func(prefix string, m map[string]bool) {
		for _, ch := range slices.Sorted(maps.Keys(m)) {
			if !slices.Contains(Channels, ch) {
				f.Add(prefix+ch, "is not a channel; use one of "+strings.Join(Channels, ", "))
			}
		}
	}
	channels("channels.", d.Channels)
	for _, name := range slices.Sorted(maps.Keys(d.Events)) {
		field := "events." + name
		if !f.Text(field, name) {
			continue
		}
		if strings.TrimSpace(name) == "" {
			f.Add(field, "an event name must not be blank")
			continue
		}
		f.MaxLen(field, name, maxKeyLen)
		channels(field+".channels.", d.Events[name].Channels)
	}
	return f.Err()
}

// Match returns the preference of d that opts out of event on channel, in
// the words a skipped delivery shows (events.E.enabled=false,
// events.E.channels.sms=false, channels.sms=false), or "" when d lets it
// through. The most specific preference is named first.
func (d Document) Match(event, channel string) string {
	if e, ok := d.Events[event]; ok {
		if e.Enabled != nil && !*e.Enabled {
			return fmt.Sprintf("events.%s.enabled=false", event)
		}
		if on, ok := e.Channels[channel]; ok && !on {
			return fmt.Sprintf("events.%s.channels.%s=false", event, channel)
		}
	}
	if on, ok := d.Channels[channel]; ok && !on {
		return fmt.Sprintf("channels.%s=false", channel)
	}
	return ""
}

// decode reads a stored or submitted document strictly (unknown fields are
// a 400 naming them).
func decode(raw []byte) (Document, error) {
	var d Document
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return Document{}, apperr.Invalid("the preferences document is malformed",
			apperr.Detail{Field: "body", Reason: apperr.Truncate(err.Error(), 300)})
	}
	d.normalize()
	return d, nil
}

// mergePatch applies patch to doc as an RFC 7386 JSON merge patch: an
// object merges key by key, null removes the key (back to opted in), any
// other value replaces it.
func mergePatch(doc, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	d, ok := doc.(map[string]any)
	if !ok {
		d = map[string]any{}
	}
	for k, v := range p {
		if v == nil {
			delete(d, k)
			continue
		}
		d[k] = mergePatch(d[k], v)
	}
	return d
}

// Key normalizes a recipient key: an email address (it has an @) is
// compared without case, as mail providers do; ids, phones and push ids are
// kept as given.
func Key(k string) string {
	k = strings.TrimSpace(k)
	if strings.Contains(k, "@") {
		return strings.ToLower(k)
	}
	return k
}

// validateKey checks a recipient key from the path.
func validateKey(k string) error {
	var f apperr.Fields
	if f.Required("recipientId", k) && f.Text("recipientId", k) {
		f.MaxLen("recipientId", k, maxKeyLen)
	}
	return f.Err()
}
