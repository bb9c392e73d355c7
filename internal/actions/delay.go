package actions

import (
	"bytes"
	"encoding/json"
	"time"
)

// MaxDelay bounds a fixed config.delay. The service's
// dispatch.maxScheduleAhead bounds every due time again at planning; this
// one refuses an obvious mistake when the action is saved.
const MaxDelay = 365 * 24 * time.Hour

// Delay is an action's config.delay: it postpones the action's deliveries
// (docs/rules.md, "When"). It is one of two shapes:
//
//   - a Go duration string, "10m" or "24h": due that long after the
//     notification (after its sendAt when it has one);
//   - {"macro": "REMIND_AT"}: due at the timestamp (RFC 3339 or epoch ms)
//     the recipient's macro REMIND_AT holds, or at sendAt if that is later;
//   - {"data": "remindAt"}: the same, from the top-level field remindAt of
//     the notification's data object (a string, or a number of epoch ms).
//
// Anything else decodes to a Delay that validate refuses with the field's
// name, rather than a decode error that names only the body.
type Delay struct {
	Duration time.Duration `json:"-"`
	Macro    string        `json:"macro,omitempty"`
	Data     string        `json:"data,omitempty"`
	// text is the duration as the caller wrote it, kept so it reads back
	// the same; bad is set when the value had neither shape.
	text string
	bad  bool
}

// UnmarshalJSON reads either shape.
func (d *Delay) UnmarshalJSON(b []byte) error {
	*d = Delay{}
	b = bytes.TrimSpace(b)
	switch {
	case len(b) > 0 && b[0] == '"':
		if err := json.Unmarshal(b, &d.text); err != nil {
			return err
		}
		v, err := time.ParseDuration(d.text)
		d.Duration, d.bad = v, err != nil
	case len(b) > 0 && b[0] == '{':
		var m struct {
			Macro string `json:"macro"`
			Data  string `json:"data"`
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		// Exactly one of the two: a time from the recipient or from the trigger.
		d.bad = dec.Decode(&m) != nil || (m.Macro == "") == (m.Data == "")
		d.Macro, d.Data = m.Macro, m.Data
	default:
		d.bad = true
	}
	return nil
}

// MarshalJSON writes the shape it was given.
func (d Delay) MarshalJSON() ([]byte, error) {
	if d.Macro != "" {
		return json.Marshal(struct {
			Macro string `json:"macro"`
		}{d.Macro})
	}
	if d.Data != "" {
		return json.Marshal(struct {
			Data string `json:"data"`
		}{d.Data})
	}
	if d.text == "" {
		d.text = d.Duration.String()
	}
	return json.Marshal(d.text)
}
