package httpapi_test

import (
	"fmt"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/config"
)

// BenchmarkSendParallel is the REST send with 64 concurrent clients on
// PostgreSQL, with the default group commit (http.sendBatchWait 2ms,
// sendBatchMax 64) and with each send committing alone (sendBatchWait 0).
// The deliveries stay pending: no worker runs.
func BenchmarkSendParallel(b *testing.B) {
	for _, c := range []struct {
		name string
		wait time.Duration
	}{{"group", 2 * time.Millisecond}, {"alone", 0}} {
		b.Run(c.name, func(b *testing.B) {
			api := newAPI(b, "postgres", func(cfg *config.Config) { cfg.HTTP.SendBatchWait = c.wait })
			cid := seedCollection(b, api.DB)
			api.addAction(cid, seedEvent(b, api.DB, cid, "USER_INVITEUSER"), "invite")
			token := api.token(auth.Principal{Roles: []string{auth.RoleSender}, Collections: []int64{cid}})
			path := fmt.Sprintf("/v1/collections/%d/notifications", cid)
			body := []byte(`{"notification": [{"name": "USER_INVITEUSER", "recipients": [{"email": "a@example.com", "macros": {"FNAME": "A"}}]}]}`)
			b.SetParallelism(64 / runtime.GOMAXPROCS(0))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					serve(b, api.App.HTTP, http.MethodPost, path, token, body, http.StatusAccepted)
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sends/s")
		})
	}
}
