package dispatch_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// digestAction is an SMS action that digests its deliveries over 10
// minutes, up to max items, and prints each item.
func digestAction(max int) actions.Action {
	return actions.Action{Name: "Comments digest", ConfigName: actions.ConfigSMS, Config: actions.Config{
		Content: actions.Content{Body: "{{count}} new for {{FNAME}}:{{#each items}} [{{macros.FNAME}} {{data.what}} @{{createdTime}}]{{/each}}"},
		Digest:  &actions.Digest{Window: "10m", MaxItems: max, Key: actions.DigestRecipient},
	}}
}

// sendDigest submits one notification to Ann with data.what = what.
func sendDigest(t *testing.T, c *clocked, in *intake.Intake, what string) int64 {
	t.Helper()
	body := `{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "data": {"what": "` + what + `"}, "recipients": [
  {"id": "ann", "phone": "+15550001", "macros": {"FNAME": "Ann"}}]}]}`
	out, err := in.Submit(context.Background(), []intake.Submission{{Source: intake.SourceQueue, Request: request(t, c.collectionID, body)}})
	require.NoError(t, err)
	return out[0].Notifications[0].ID
}

func one(t *testing.T, c *clocked, id int64) *dispatch.Delivery {
	t.Helper()
	ds := c.deliveries(t, id)
	require.Len(t, ds, 1)
	return ds[0]
}

// Seven notifications to one recipient within the window: the first's
// delivery opens it (scheduled, reason digest, due at its close), the
// other six are digested and link to it; nothing is claimed before the
// close; at the close one message goes out with the seven items and the
// count, and the window is gone.
func TestDigestSendsOneDeliveryWithEveryItemAtTheClose(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		c := setupClocked(t, db, digestAction(50))
		ctx := context.Background()
		var ids []int64
		for i := range 7 {
			c.at(t0.Add(time.Duration(i) * time.Minute))
			ids = append(ids, sendDigest(t, c, c.intake, fmt.Sprintf("c%d", i)))
		}
		first := one(t, c, ids[0])
		require.Equal(t, dispatch.StatusScheduled, first.Status)
		require.Equal(t, dispatch.ReasonDigest, first.Reason)
		closes := t0.Add(10 * time.Minute)
		require.Equal(t, closes.UnixMilli(), first.NextAttemptAt)
		require.Equal(t, first.ID, first.DigestDeliveryID)
		for _, id := range ids[1:] {
			d := one(t, c, id)
			require.Equal(t, dispatch.StatusDigested, d.Status)
			require.Equal(t, first.ID, d.DigestDeliveryID)
		}
		// The status API shows the open digest: when it closes and which
		// notifications it holds.
		require.NotNil(t, first.Digest)
		require.Equal(t, 7, first.Digest.Count)
		require.Equal(t, closes.UnixMilli(), first.Digest.ClosesAt)
		for i, it := range first.Digest.Items {
			require.Equal(t, ids[i], it.NotificationID)
		}

		c.at(closes.Add(-time.Millisecond))
		n, err := c.disp.RunOnce(ctx)
		require.NoError(t, err)
		require.Zero(t, n, "claimed before the window closed")

		c.at(closes)
		n, err = c.disp.RunOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		msgs := c.sandbox.Messages()
		require.Len(t, msgs, 1)
		want := "7 new for Ann:"
		for i := range 7 {
			want += fmt.Sprintf(" [Ann c%d @%d]", i, t0.Add(time.Duration(i)*time.Minute).UnixMilli())
		}
		require.Equal(t, want, msgs[0].Body)
		require.Equal(t, dispatch.StatusSent, one(t, c, ids[0]).Status)
		var open int64
		require.NoError(t, db.Raw(`SELECT count(*) FROM digest_windows`).Scan(&open).Error)
		require.Zero(t, open)

		// The next notification opens a new window.
		c.at(closes.Add(time.Minute))
		next := one(t, c, sendDigest(t, c, c.intake, "c7"))
		require.Equal(t, dispatch.StatusScheduled, next.Status)
		require.Equal(t, closes.Add(11*time.Minute).UnixMilli(), next.NextAttemptAt)
	})
}

// A window whose time has passed takes no more items, even before a worker
// claims its delivery: the late notification opens a window of its own.
func TestDigestWindowClosesAtItsTime(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		c := setupClocked(t, db, digestAction(50))
		a := sendDigest(t, c, c.intake, "a")
		c.at(t0.Add(10*time.Minute - time.Millisecond))
		b := one(t, c, sendDigest(t, c, c.intake, "b"))
		require.Equal(t, dispatch.StatusDigested, b.Status)
		c.at(t0.Add(10 * time.Minute))
		late := one(t, c, sendDigest(t, c, c.intake, "late"))
		require.Equal(t, dispatch.StatusScheduled, late.Status)
		require.Equal(t, late.ID, late.DigestDeliveryID)
		require.NotEqual(t, one(t, c, a).ID, late.ID)

		n, err := c.disp.RunOnce(context.Background())
		require.NoError(t, err)
		require.Equal(t, 1, n)
		require.True(t, strings.HasPrefix(c.sandbox.Messages()[0].Body, "2 new for Ann:"))
	})
}

// maxItems reached: the window's delivery is due at once, and the next
// notification opens a new window.
func TestDigestMaxItemsClosesEarly(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		c := setupClocked(t, db, digestAction(3))
		ctx := context.Background()
		ids := []int64{sendDigest(t, c, c.intake, "a")}
		c.at(t0.Add(time.Minute))
		ids = append(ids, sendDigest(t, c, c.intake, "b"))
		require.Equal(t, t0.Add(10*time.Minute).UnixMilli(), one(t, c, ids[0]).NextAttemptAt)
		c.at(t0.Add(2 * time.Minute))
		ids = append(ids, sendDigest(t, c, c.intake, "c"))
		require.Equal(t, t0.Add(2*time.Minute).UnixMilli(), one(t, c, ids[0]).NextAttemptAt, "a full window is due now")
		fourth := one(t, c, sendDigest(t, c, c.intake, "d"))
		require.Equal(t, dispatch.StatusScheduled, fourth.Status, "a full window takes no more")
		require.Equal(t, fourth.ID, fourth.DigestDeliveryID)

		n, err := c.disp.RunOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		msgs := c.sandbox.Messages()
		require.Len(t, msgs, 1)
		require.True(t, strings.HasPrefix(msgs[0].Body, "3 new for Ann: [Ann a @"), msgs[0].Body)
	})
}

// Intakes of two instances joining the same key at once, on PostgreSQL:
// one window, which holds every delivery.
func TestDigestConcurrentIntakesOpenOneWindow(t *testing.T) {
	t.Parallel()
	db, _ := testdb.Postgres(t)
	c := setupClocked(t, db, digestAction(1000))
	other := intake.New(db, actions.NewRules(db), nil, func() time.Time { return t0 }, nil)
	const n = 16
	ids := make([]int64, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		in := c.intake
		if i%2 == 1 {
			in = other
		}
		wg.Go(func() {
			<-start
			ids[i] = sendDigest(t, c, in, fmt.Sprintf("c%d", i))
		})
	}
	close(start)
	wg.Wait()
	var windows []int64
	require.NoError(t, db.Raw(`SELECT delivery_id FROM digest_windows`).Scan(&windows).Error)
	require.Len(t, windows, 1)
	scheduled, digested := 0, 0
	for _, id := range ids {
		d := one(t, c, id)
		require.Equal(t, windows[0], d.DigestDeliveryID)
		switch d.Status {
		case dispatch.StatusScheduled:
			scheduled++
		case dispatch.StatusDigested:
			digested++
		}
	}
	require.Equal(t, 1, scheduled)
	require.Equal(t, n-1, digested)
}

// Canceling the notification that opened a window cancels the digest's
// delivery and closes the window: the next notification opens a new one
// rather than joining a delivery that will never be sent.
func TestDigestCancelOfTheOpenerClosesTheWindow(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		c := setupClocked(t, db, digestAction(50))
		first := sendDigest(t, c, c.intake, "a")
		_, _, err := c.store.Cancel(context.Background(), c.collectionID, first, auth.Principal{UserID: "u"})
		require.NoError(t, err)
		require.Equal(t, dispatch.StatusCanceled, one(t, c, first).Status)
		next := one(t, c, sendDigest(t, c, c.intake, "b"))
		require.Equal(t, dispatch.StatusScheduled, next.Status)
		require.Equal(t, next.ID, next.DigestDeliveryID)
	})
}
