package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/ncruces/go-sqlite3"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/store"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// While the database cannot work (full, on both dialects: the driver's own
// error values), every route that needs it answers 503 UNAVAILABLE with
// Retry-After and the documented body, never 500; /readyz is not-ready,
// naming the error, though the database answers pings; and both recover
// with the database.
func TestDatabaseOutageAnswers503OnEveryRoute(t *testing.T) {
	t.Parallel()
	faults := map[string]error{
		"postgres": &pgconn.PgError{Severity: "ERROR", Code: "53100", Message: "could not extend file: No space left on device"},
		"sqlite":   fmt.Errorf("commit: %w", sqlite3.FULL),
	}
	for dialect, fault := range faults {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			api := newAPI(t, dialect)
			su := api.superAdmin()

			// Something of every kind to address, made before the outage.
			cid, aid := seedInvite(t, api)
			var eid int64
			require.NoError(t, api.DB.Raw("SELECT event_id FROM actions WHERE id = ?", aid).Scan(&eid).Error)
			res := api.do(http.MethodPost, fmt.Sprintf("/v1/collections/%d/notifications", cid), su, sendBody)
			require.Equal(t, http.StatusAccepted, res.Code, "body: %s", res.Raw)
			nid := int64(res.JSON["notificationIds"].([]any)[0].(float64))
			api.createCollection("before the outage")
			env := api.listEnvelopes("")
			require.NotEmpty(t, env)
			envID := fmt.Sprint(env[0]["id"])

			hook := addWebhook(t, api, cid)
			ids := strings.NewReplacer(":collectionId", fmt.Sprint(cid), ":eventId", fmt.Sprint(eid),
				":actionId", fmt.Sprint(aid), ":notificationId", fmt.Sprint(nid), ":envelopeId", envID, ":webhookId", fmt.Sprint(hook),
				":address", "a%40example.com", ":recipientId", "user-1", ":DateTimeUTC", "2024-03-07T04:40:05Z")
			bodies := map[string]any{
				"POST /v1/collections":                                                    map[string]any{"name": "during the outage"},
				"GET /v1/collections":                                                     nil,
				"GET /v1/collections/:collectionId":                                       nil,
				"PATCH /v1/collections/:collectionId":                                     map[string]any{"description": "x"},
				"DELETE /v1/collections/:collectionId":                                    nil,
				"POST /v1/collections/:collectionId/events":                               map[string]any{"name": "DURING"},
				"GET /v1/collections/:collectionId/events":                                nil,
				"GET /v1/collections/:collectionId/events/:eventId":                       nil,
				"PATCH /v1/collections/:collectionId/events/:eventId":                     map[string]any{"description": "x"},
				"DELETE /v1/collections/:collectionId/events/:eventId":                    nil,
				"POST /v1/collections/:collectionId/actions":                              createBody(eid, "during"),
				"GET /v1/collections/:collectionId/actions":                               nil,
				"GET /v1/collections/:collectionId/actions/:actionId":                     nil,
				"PATCH /v1/collections/:collectionId/actions/:actionId":                   map[string]any{"description": "x"},
				"DELETE /v1/collections/:collectionId/actions/:actionId":                  nil,
				"POST /v1/collections/:collectionId/actions/:actionId/preview":            map[string]any{"macros": map[string]string{"FNAME": "x"}},
				"POST /v1/collections/:collectionId/actions/:actionId/test-send":          map[string]any{"email": "a@example.com", "macros": map[string]string{"FNAME": "x"}},
				"POST /v1/collections/:collectionId/notifications":                        sendBody,
				"GET /v1/collections/:collectionId/notifications":                         nil,
				"GET /v1/collections/:collectionId/notifications/:notificationId":         nil,
				"POST /v1/collections/:collectionId/notifications/:notificationId/cancel": nil,
				"GET /v1/collections/:collectionId/deliveries":                            nil,
				"GET /v1/envelopes":                                                       nil,
				"GET /v1/envelopes/stats":                                                 nil,
				"GET /v1/envelopes/:envelopeId":                                           nil,
				"POST /v1/envelopes/replay":                                               map[string]any{"since": 1},
				"GET /v1/feed":                                                            nil,
				"POST /v1/feed/:envelopeId/ack":                                           nil,
				"POST /v1/feed/reset/:DateTimeUTC":                                        nil,
				"POST /v1/collections/:collectionId/webhooks":                             map[string]any{"url": "https://hooks.example.com/x"},
				"GET /v1/collections/:collectionId/webhooks":                              nil,
				"GET /v1/collections/:collectionId/webhooks/:webhookId":                   nil,
				"PATCH /v1/collections/:collectionId/webhooks/:webhookId":                 map[string]any{"description": "x"},
				"DELETE /v1/collections/:collectionId/webhooks/:webhookId":                nil,
				"POST /v1/collections/:collectionId/webhooks/:webhookId/rotate-secret":    nil,
				"POST /v1/collections/:collectionId/webhooks/:webhookId/validate":         nil,
				"GET /v1/collections/:collectionId/webhooks/:webhookId/attempts":          nil,
				"POST /v1/collections/:collectionId/suppressions":                         map[string]any{"address": "a@example.com", "channel": "email"},
				"GET /v1/collections/:collectionId/suppressions":                          nil,
				"GET /v1/collections/:collectionId/suppressions/:address":                 nil,
				"DELETE /v1/collections/:collectionId/suppressions/:address":              nil,
				"GET /v1/collections/:collectionId/recipients/:recipientId/preferences":   nil,
				"PUT /v1/collections/:collectionId/recipients/:recipientId/preferences":   map[string]any{"channels": map[string]bool{"sms": false}},
				"PATCH /v1/collections/:collectionId/recipients/:recipientId/preferences": map[string]any{"channels": map[string]bool{"sms": false}},
			}
			// The feed routes name their consumer in the query.
			queries := map[string]string{"GET /v1/feed": "?consumer=outage", "POST /v1/feed/:envelopeId/ack": "?consumer=outage",
				"POST /v1/feed/reset/:DateTimeUTC": "?consumer=outage"}

			var down atomic.Bool
			testdb.InjectError(t, api.DB, func(*gorm.Statement) error {
				if down.Load() {
					return fault
				}
				return nil
			})
			down.Store(true)

			tested := 0
			for _, r := range api.App.HTTP.Routes() {
				if !strings.HasPrefix(r.Path, "/v1/") || strings.HasPrefix(r.Path, "/v1/webhooks/") {
					continue // webhooks authenticate by provider signatures; their own tests cover them
				}
				key := r.Method + " " + r.Path
				body, ok := bodies[key]
				require.True(t, ok, "route %s has no case in this test: add one", key)
				res := api.do(r.Method, ids.Replace(r.Path)+queries[key], su, body)
				if r.Method == http.MethodGet && res.Code == http.StatusOK {
					continue // served from the action cache without the database: fine
				}
				require.Equal(t, http.StatusServiceUnavailable, res.Code, "%s: %s", key, res.Raw)
				require.Equal(t, "UNAVAILABLE", res.JSON["status"], "%s: %s", key, res.Raw)
				require.True(t, strings.HasSuffix(res.JSON["responseCode"].(string), "0503"), "%s: %s", key, res.Raw)
				require.NotEmpty(t, res.JSON["responseMessage"])
				require.IsType(t, []any{}, res.JSON["details"])
				require.Equal(t, "5", res.Header.Get("Retry-After"), key)
				tested++
			}
			require.Greater(t, tested, len(bodies)/2)

			// Not ready, naming the error, though the ping succeeds.
			sqlDB, err := api.DB.DB()
			require.NoError(t, err)
			require.NoError(t, sqlDB.PingContext(context.Background()))
			res = api.do(http.MethodGet, "/readyz", "", nil)
			require.Equal(t, http.StatusServiceUnavailable, res.Code, "%s", res.Raw)
			require.Equal(t, "unavailable", res.JSON["status"])
			require.Contains(t, res.JSON["checks"].(map[string]any)["database"], fault.Error())

			// Back: the next write succeeds and clears it.
			down.Store(false)
			res = api.do(http.MethodPost, "/v1/collections", su, map[string]any{"name": "after the outage"})
			require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
			res = api.do(http.MethodGet, "/readyz", "", nil)
			require.Equal(t, http.StatusOK, res.Code, "%s", res.Raw)
		})
	}
}

// On SQLite a write that meets another connection's write lock waits within
// database.busyTimeout: it succeeds when the lock is released in time, and
// answers 503 UNAVAILABLE with Retry-After (never 500 "database is locked")
// when it is not.
func TestSQLiteBusyWaitsThenAnswers503(t *testing.T) {
	t.Parallel()
	api := newAPI(t, "sqlite", func(c *config.Config) { c.Database.BusyTimeout = 2 * time.Second })
	su := api.superAdmin()

	// Another connection (a long send, another process) holds the write
	// lock: BEGIN IMMEDIATE.
	holder, err := store.Open(context.Background(), config.Database{SQLitePath: api.cfg.Database.SQLitePath, MaxOpenConns: 1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close(holder) })
	lock := func() func() {
		tx := holder.Begin()
		require.NoError(t, tx.Error)
		require.NoError(t, tx.Exec("UPDATE collections SET name = name").Error)
		return func() { require.NoError(t, tx.Rollback().Error) }
	}

	// Held past the bound: 503 after waiting.
	release := lock()
	start := time.Now()
	res := api.do(http.MethodPost, "/v1/collections", su, map[string]any{"name": "blocked"})
	waited := time.Since(start)
	release()
	requireError(t, res, http.StatusServiceUnavailable, "UNAVAILABLE", "NOCOCRT0503")
	require.Equal(t, "5", res.Header.Get("Retry-After"))
	require.GreaterOrEqual(t, waited, time.Second, "it waited for the lock before giving up")

	// Released within the bound: the write waits and succeeds.
	release = lock()
	done := make(chan response, 1)
	go func() { done <- api.do(http.MethodPost, "/v1/collections", su, map[string]any{"name": "waited"}) }()
	// Release once the request is waiting on the lock: its connection is
	// in use (a write lock wait shows as one in-use connection).
	sqlDB, err := api.DB.DB()
	require.NoError(t, err)
	require.Eventually(t, func() bool { return sqlDB.Stats().InUse > 0 }, 5*time.Second, time.Millisecond)
	release()
	res = <-done
	require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
}
