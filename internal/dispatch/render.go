package dispatch

import (
	"github.com/notificationservice/notificationservice/internal/message"
	"github.com/notificationservice/notificationservice/internal/render"
)

// ForRender returns r as package render takes it (the test-send route
// renders a Recipient too).
func (r Recipient) ForRender() render.Recipient {
	return render.Recipient{To: addresses(r.To()), Cc: addresses(r.Ccs), Bcc: addresses(r.Bccs),
		Phone: r.Phone, PushToken: r.PushID, Locale: r.Locale, Macros: r.Macros}
}

// addresses converts a request's addresses to the message's.
func addresses(l []Address) []message.Address {
	if len(l) == 0 {
		return nil
	}
	out := make([]message.Address, len(l))
	for i, a := range l {
		out[i] = message.Address(a)
	}
	return out
}
