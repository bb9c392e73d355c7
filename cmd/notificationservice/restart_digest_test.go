package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/dispatch"
)

// TestDigestSurvivesSIGKILL opens a digest window of three notifications
// while the real binary runs, SIGKILLs it before the window closes, and
// starts another process: the window is rows (the digest's scheduled
// delivery and digest_windows), so the new process sends the digest once,
// with the three items, and the joined deliveries stay digested.
func TestDigestSurvivesSIGKILL(t *testing.T) {
	cfg := actions.Config{Content: actions.Content{Subject: "Comments", Text: "{{count}} comments:{{#each items}} {{data.n}}{{/each}}"},
		Digest: &actions.Digest{Window: "4s", MaxItems: 50}}
	restartTest(t, "COMMENT", cfg, func(t *testing.T, b *restartBundle) {
		a := b.start(t)
		ids := make([]int64, 3)
		for i := range ids {
			ids[i] = b.submit(t, fmt.Sprintf(`{"collectionId": %d, "notification": [{"name": "COMMENT", "data": {"n": "c%d"},
  "recipients": [{"id": "ann", "email": "ann@example.com"}]}]}`, b.cid, i))
		}
		sigkill(t, a)
		var d struct {
			ID            int64
			Status        string
			NextAttemptAt int64
		}
		require.NoError(t, b.db.Raw("SELECT id, status, next_attempt_at FROM deliveries WHERE notification_id = ?", ids[0]).Scan(&d).Error)
		require.Equal(t, dispatch.StatusScheduled, d.Status)
		require.True(t, time.Now().UnixMilli() < d.NextAttemptAt, "the machine was too slow to kill the service before the window closed")

		_ = b.start(t)
		require.Eventually(t, func() bool { return b.status(t, ids[0]) == dispatch.StatusSent }, 30*time.Second, 20*time.Millisecond,
			"the next process sends the digest")
		for _, id := range ids[1:] {
			require.Equal(t, dispatch.StatusDigested, b.status(t, id))
		}
		var msgs []string
		require.NoError(t, b.db.Raw("SELECT message FROM sandbox_messages WHERE delivery_id = ?", d.ID).Scan(&msgs).Error)
		require.Len(t, msgs, 1, "sent once")
		require.True(t, strings.Contains(msgs[0], "3 comments: c0 c1 c2"), msgs[0])
	})
}
