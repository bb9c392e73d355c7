package httpapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// With group commit (here: a batch goes when 3 sends joined it), each
// send of a batch is answered on its own: a reused key with another body
// 409 while the others of its batch are accepted; and when the batch's
// transaction fails for the database, every send of it is 503.
func TestGroupCommitAnswersEachSend(t *testing.T) {
	t.Parallel()
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			api := newAPI(t, d, func(c *config.Config) { c.HTTP.SendBatchWait, c.HTTP.SendBatchMax = time.Second, 3 })
			cid, _ := seedInvite(t, api)
			sender := api.token(auth.Principal{Roles: []string{auth.RoleSender}, Collections: []int64{cid}})
			path := fmt.Sprintf("/v1/collections/%d/notifications", cid)
			sendAll := func(keys, bodies []string) []response {
				res := make([]response, len(keys))
				var wg sync.WaitGroup
				for i := range keys {
					wg.Go(func() { res[i] = api.do(http.MethodPost, path, sender, bodies[i], "Idempotency-Key", keys[i]) })
				}
				wg.Wait()
				return res
			}
			other := strings.Replace(sendBody, "John", "Jane", 1)

			first := sendAll([]string{"g-1", "g-0", "g-00"}, []string{sendBody, sendBody, sendBody})
			for _, r := range first {
				require.Equal(t, http.StatusAccepted, r.Code, "body: %s", r.Raw)
			}
			res := sendAll([]string{"g-1", "g-2", "g-3"}, []string{other, sendBody, sendBody})
			requireError(t, res[0], http.StatusConflict, "FAILED_PRECONDITION", "NONTSND0409")
			require.Equal(t, http.StatusAccepted, res[1].Code, "body: %s", res[1].Raw)
			require.Equal(t, http.StatusAccepted, res[2].Code, "body: %s", res[2].Raw)
			require.NotEqual(t, res[1].JSON["notificationIds"], res[2].JSON["notificationIds"])

			failing := testdb.OutageOn(t, api.DB, "INSERT INTO notifications")
			failing.Store(true)
			for i, r := range sendAll([]string{"o-1", "o-2", "o-3"}, []string{sendBody, sendBody, sendBody}) {
				requireError(t, r, http.StatusServiceUnavailable, "UNAVAILABLE", "NONTSND0503")
				require.NotEmpty(t, r.Header.Get("Retry-After"), "send %d", i)
			}
			failing.Store(false)
		})
	}
}
