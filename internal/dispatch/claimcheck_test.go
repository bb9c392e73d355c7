package dispatch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// A send too large for one EventBridge entry records a claim-check envelope
// that points at the notification itself (docs/outbox.md).
func TestLargeSendEnvelopePointsAtTheNotification(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		rs := make([]string, 1000)
		for i := range rs {
			rs[i] = fmt.Sprintf(`{"email": "u%04d@example.com", "macros": {"BIO": %q}}`, i, strings.Repeat("x", 300))
		}
		req := request(t, b.collectionID, `{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [`+strings.Join(rs, ",")+`]}]}`)
		res, err := b.intake.Send(context.Background(), req, "big", nil, dispatch.Producer{}, auth.Principal{UserID: "1"})
		require.NoError(t, err)
		require.Len(t, res.Notifications, 1)

		var detail string
		require.NoError(t, db.Raw("SELECT detail FROM outbox WHERE detail_type = ?", outbox.NotificationsSend).Scan(&detail).Error)
		var d outbox.Detail
		require.NoError(t, json.Unmarshal([]byte(detail), &d))
		require.NotNil(t, d.ClaimCheck, "a %d-byte send must be claim-checked", len(detail))
		require.Equal(t, fmt.Sprintf("/v1/collections/%d/notifications/%d", b.collectionID, res.Notifications[0].ID), d.ClaimCheck.Href)
		require.Less(t, len(detail), 4096)
	})
}
