package delivery

import (
	"context"
	"fmt"

	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/store"
)

// digest closes the digest window whose delivery is id and returns what
// its templates see (docs/rules.md, Digest): items, one per delivery the
// window holds (its own first, then the joined ones in order), each with
// the recipient's macros, the notification's data and createdTime; and
// count.
//
// The window's row is deleted first: on PostgreSQL the DELETE waits for an
// intake transaction that is joining the window right now (it holds the
// row), so that join is committed, and read below, or it finds no row and
// opens a new window. On a retry the row is already gone and the items are
// the same.
func (d *Dispatcher) digest(ctx context.Context, id int64) (map[string]any, error) {
	if err := d.db.WithContext(ctx).Exec(`DELETE FROM digest_windows WHERE delivery_id = ?`, id).Error; err != nil {
		return nil, fmt.Errorf("digest %d: close window: %w", id, err)
	}
	var rows []struct {
		Recipient   string
		Data        string
		CreatedTime int64
	}
	if err := d.db.WithContext(ctx).Raw(`SELECT d.recipient, n.data, n.created_time FROM deliveries d
JOIN notifications n ON n.id = d.notification_id
WHERE d.digest_delivery_id = ? ORDER BY d.id`, id).Scan(&rows).Error; err != nil {
		return nil, fmt.Errorf("digest %d: read items: %w", id, err)
	}
	items := make([]any, len(rows))
	for i, r := range rows {
		var rc dispatch.Recipient
		if err := store.ScanJSON(r.Recipient, &rc); err != nil {
			return nil, fmt.Errorf("digest %d: item %d recipient: %w", id, i, err)
		}
		var data map[string]any
		if r.Data != "" {
			if err := store.ScanJSON(r.Data, &data); err != nil {
				return nil, fmt.Errorf("digest %d: item %d data: %w", id, i, err)
			}
		}
		macros := make(map[string]any, len(rc.Macros))
		for k, v := range rc.Macros {
			macros[k] = v
		}
		items[i] = map[string]any{"macros": macros, "data": data, "createdTime": r.CreatedTime}
	}
	return map[string]any{"items": items, "count": len(items)}, nil
}
