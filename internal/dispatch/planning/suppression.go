package planning

import (
	"context"
	"fmt"
	"time"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/dispatch"
)

// SuppressionKey is one address of a recipient on one channel, as the
// recipient gave it.
type SuppressionKey struct {
	CollectionID int64
	Channel      string
	Address      string
}

// SuppressionHit is the suppression list's entry for a key: why the
// address is on it, what put it there, and since when (epoch ms).
type SuppressionHit struct {
	Reason      string
	Source      string
	CreatedTime int64
}

// SuppressionLookup reads the suppression list (internal/suppressions,
// wired in app). Suppressed answers, for each key, its entry or nil, in one
// query whatever the number of keys; it normalizes the addresses itself.
type SuppressionLookup interface {
	Suppressed(ctx context.Context, keys []SuppressionKey) ([]*SuppressionHit, error)
}

// Suppressions is the suppression-list rule: a recipient whose address on
// the action's channel is on the collection's list is skipped as
// suppressed, with the entry's source, time and reason as the detail. For
// email, any suppressed To address (tos, or email) skips the delivery; cc
// and bcc addresses are not checked (docs/rules.md). The list is read once
// per batch, for every address of every recipient of the batch.
func Suppressions(l SuppressionLookup) BatchRule { return suppressionRule{l} }

type suppressionRule struct{ l SuppressionLookup }

// ForBatch implements BatchRule.
func (r suppressionRule) ForBatch(ctx context.Context, ins []Input) (Rule, error) {
	var keys []SuppressionKey
	for i := range ins {
		cid := ins[i].CollectionID
		for _, rc := range ins[i].Notification.Recipients {
			for _, a := range rc.To() {
				keys = append(keys, SuppressionKey{cid, actions.ChannelEmail, a.Email})
			}
			if rc.Phone != "" {
				keys = append(keys, SuppressionKey{cid, actions.ChannelSMS, rc.Phone})
			}
			if rc.PushID != "" {
				keys = append(keys, SuppressionKey{cid, actions.ChannelPush, rc.PushID})
			}
		}
	}
	if len(keys) == 0 {
		return suppressed{}, nil
	}
	hits, err := r.l.Suppressed(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("suppression list: %w", err)
	}
	set := suppressed{}
	for i, h := range hits {
		if h != nil {
			set[keys[i]] = h
		}
	}
	return set, nil
}

// suppressed is the batch's entries, by the key they were asked with.
type suppressed map[SuppressionKey]*SuppressionHit

// Skip implements Rule.
func (s suppressed) Skip(p Pair) (string, string) {
	if len(s) == 0 {
		return "", ""
	}
	cid, ch := p.In.CollectionID, p.Action.Channel()
	var addrs []string
	switch ch {
	case actions.ChannelEmail:
		for _, a := range p.Recipient.To() {
			addrs = append(addrs, a.Email)
		}
	case actions.ChannelSMS:
		addrs = []string{p.Recipient.Phone}
	case actions.ChannelPush:
		addrs = []string{p.Recipient.PushID}
	}
	for _, a := range addrs {
		if h := s[SuppressionKey{cid, ch, a}]; h != nil {
			detail := fmt.Sprintf("%s %s is suppressed since %s by %s", ch, a, time.UnixMilli(h.CreatedTime).UTC().Format(time.RFC3339), h.Source)
			if h.Reason != "" {
				detail += ": " + h.Reason
			}
			return dispatch.ReasonSuppressed, detail
		}
	}
	return "", ""
}
