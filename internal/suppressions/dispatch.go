package suppressions

import (
	"context"

	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/planning"
)

// Dispatch is the list as dispatch's parts declare it: the planning rule's
// lookup (planning.SuppressionLookup), and where the status webhooks and
// the delivery workers put the addresses providers refuse
// (status.Suppressor, delivery.Suppressor). It lives here, as
// preferences.Rule does, so that app and the queue benchmark wire one
// implementation.
type Dispatch struct{ s *Service }

// NewDispatch returns s as dispatch's parts use it.
func NewDispatch(s *Service) Dispatch { return Dispatch{s: s} }

// Suppressed implements planning.SuppressionLookup with one Find.
func (d Dispatch) Suppressed(ctx context.Context, keys []planning.SuppressionKey) ([]*planning.SuppressionHit, error) {
	ks := make([]Key, len(keys))
	for i, k := range keys {
		ks[i] = Key{CollectionID: k.CollectionID, Channel: k.Channel, Address: k.Address}
	}
	found, err := d.s.Find(ctx, ks)
	if err != nil {
		return nil, err
	}
	out := make([]*planning.SuppressionHit, len(found))
	for i, f := range found {
		if f != nil {
			out[i] = &planning.SuppressionHit{Reason: f.Reason, Source: f.Source, CreatedTime: f.CreatedTime}
		}
	}
	return out, nil
}

// Suppress implements status.Suppressor and delivery.Suppressor: it adds
// entries as Service.Suppress does and returns how many were new.
func (d Dispatch) Suppress(ctx context.Context, entries []dispatch.Suppression) (int, error) {
	es := make([]Entry, len(entries))
	for i, e := range entries {
		es[i] = Entry{CollectionID: e.CollectionID, Channel: e.Channel, Address: e.Address,
			Reason: e.Reason, Source: e.Source, Who: e.Who}
	}
	return d.s.Suppress(ctx, es)
}
