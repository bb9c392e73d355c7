package dispatch

import "github.com/notificationservice/notificationservice/internal/condition"

// ForCondition returns r as a condition sees it (recipient.* in
// docs/rules.md): planning and the send-time condition gate build the same
// environment from it, one from the request, the other from the stored
// delivery.
func (r Recipient) ForCondition() condition.Recipient {
	addrs := func(l []Address) []condition.Address {
		out := make([]condition.Address, len(l))
		for i, a := range l {
			out[i] = condition.Address{Email: a.Email, Name: a.Name}
		}
		return out
	}
	return condition.Recipient{
		ID: r.ID, Email: r.Email, Tos: addrs(r.Tos), Ccs: addrs(r.Ccs), Bccs: addrs(r.Bccs),
		Phone: r.Phone, PushID: r.PushID, Locale: r.Locale, Timezone: r.Timezone, Macros: r.Macros,
	}
}
