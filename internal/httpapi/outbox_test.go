package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/outbox/eventbridgetest"
	"github.com/notificationservice/notificationservice/internal/store"
)

// listEnvelopes lists, through GET /v1/envelopes, every envelope matching query (e.g. "state=pending"),
// following the cursor.
func (a *testAPI) listEnvelopes(query string) []map[string]any {
	a.t.Helper()
	var out []map[string]any
	cursor := ""
	for {
		q := query + "&limit=200"
		if cursor != "" {
			q += "&cursor=" + cursor
		}
		res := a.do(http.MethodGet, "/v1/envelopes?"+q, a.superAdmin(), nil)
		require.Equal(a.t, http.StatusOK, res.Code, "%s", res.Raw)
		for _, e := range res.JSON["envelopes"].([]any) {
			out = append(out, e.(map[string]any))
		}
		cursor, _ = res.JSON["nextCursor"].(string)
		if cursor == "" {
			return out
		}
	}
}

// created returns the id of the entity in a 201 body such as
// {"collection": {...}}.
func created(t testing.TB, res response, key string) int64 {
	t.Helper()
	require.Equal(t, http.StatusCreated, res.Code, "%s", res.Raw)
	return int64(res.JSON[key].(map[string]any)["id"].(float64))
}

func TestEnvelopeRoutes(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, api *testAPI) {
		root := api.superAdmin()
		col := created(t, api.do(http.MethodPost, "/v1/collections", root, map[string]any{"name": "accounts"}), "collection")
		ev := created(t, api.do(http.MethodPost, fmt.Sprintf("/v1/collections/%d/events", col), root,
			map[string]any{"name": "USER_INVITEUSER"}, "X-Act-On-Behalf-Of-User", "42"), "event")
		res := api.do(http.MethodDelete, fmt.Sprintf("/v1/collections/%d/events/%d", col, ev), root, nil)
		require.Equal(t, http.StatusOK, res.Code, "%s", res.Raw)
		other := created(t, api.do(http.MethodPost, "/v1/collections", root, map[string]any{"name": "billing"}), "collection")

		all := api.listEnvelopes("")
		require.Len(t, all, 4)
		types := []string{}
		for _, e := range all {
			types = append(types, e["detailType"].(string))
			require.Equal(t, "pending", e["state"], "no relay runs in this test")
		}
		require.Equal(t, []string{outbox.CollectionCreate, outbox.EventCreate, outbox.EventDelete, outbox.CollectionCreate}, types)

		// The detail is the catalogue's, with the caller taken from the token.
		d := all[1]["detail"].(map[string]any)
		require.Equal(t, fmt.Sprint(ev), d["id"])
		require.Equal(t, fmt.Sprint(col), d["collectionId"])
		require.Equal(t, outbox.EventCreate, d["eventType"])
		require.Equal(t, "1", d["userId"])
		require.Equal(t, float64(42), d["actOnBehalfOfUser"])
		require.Equal(t, []any{auth.RoleSuperAdmin}, d["roles"])
		require.Equal(t, "CSR", d["channel"])
		require.Equal(t, all[1]["envelopeId"], d["envelopeId"])
		require.Equal(t, "USER_INVITEUSER", d["payload"].(map[string]any)["event"].(map[string]any)["name"])
		del := all[2]["detail"].(map[string]any)["payload"].(map[string]any)
		require.Equal(t, "NOEVDEL0000", del["responseCode"])

		// Filters.
		require.Len(t, api.listEnvelopes("detailType="+outbox.CollectionCreate), 2)
		require.Len(t, api.listEnvelopes(fmt.Sprintf("collectionId=%d", other)), 1)
		require.Len(t, api.listEnvelopes("state=pending"), 4)
		require.Empty(t, api.listEnvelopes("state=published"))
		require.Empty(t, api.listEnvelopes("state=parked"))
		created1 := int64(all[1]["createdTime"].(float64))
		require.Len(t, api.listEnvelopes(fmt.Sprintf("since=%d", created1+1_000_000)), 0)
		since := time.UnixMilli(created1).UTC().Format(time.RFC3339Nano)
		require.GreaterOrEqual(t, len(api.listEnvelopes("since="+url.QueryEscape(since))), 3)

		// Keyset pages.
		res = api.do(http.MethodGet, "/v1/envelopes?limit=3", root, nil)
		require.Equal(t, http.StatusOK, res.Code)
		require.Len(t, res.JSON["envelopes"], 3)
		next := res.JSON["nextCursor"].(string)
		require.NotEmpty(t, next)
		res = api.do(http.MethodGet, "/v1/envelopes?limit=3&cursor="+next, root, nil)
		require.Len(t, res.JSON["envelopes"], 1)
		require.Equal(t, all[3]["envelopeId"], res.JSON["envelopes"].([]any)[0].(map[string]any)["envelopeId"])
		require.Empty(t, res.JSON["nextCursor"])

		// One by envelopeId.
		res = api.do(http.MethodGet, "/v1/envelopes/"+all[0]["envelopeId"].(string), root, nil)
		require.Equal(t, http.StatusOK, res.Code, "%s", res.Raw)
		require.Equal(t, all[0]["envelopeId"], res.JSON["envelope"].(map[string]any)["envelopeId"])
		requireError(t, api.do(http.MethodGet, "/v1/envelopes/nope", root, nil), http.StatusNotFound, "NOT_FOUND", "NOOBGET0404")

		res = api.do(http.MethodGet, "/v1/envelopes/stats", root, nil)
		require.Equal(t, http.StatusOK, res.Code, "%s", res.Raw)
		require.Equal(t, map[string]any{"pending": float64(4), "parked": float64(0), "oldestPendingTime": all[0]["createdTime"]}, res.JSON["stats"])

		// Bad queries name the parameter.
		for q, field := range map[string]string{
			"state=lost":              "state",
			"detailType=thing/create": "detailType",
			"since=yesterday":         "since",
			"collectionId=-1":         "collectionId",
			"since=2000&until=1000":   "until",
			"limit=0":                 "limit",
		} {
			res := api.do(http.MethodGet, "/v1/envelopes?"+q, root, nil)
			requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOOBLST0400")
			require.Contains(t, details(res), field, q)
		}

		// Replay: since is required; a replay makes the range pending again.
		res = api.do(http.MethodPost, "/v1/envelopes/replay", root, map[string]any{})
		requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOOBRPL0400")
		require.Contains(t, details(res), "since")
		res = api.do(http.MethodPost, "/v1/envelopes/replay", root, map[string]any{"since": "last week"})
		requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOOBRPL0400")
		require.Contains(t, details(res), "since")
		res = api.do(http.MethodPost, "/v1/envelopes/replay", root, map[string]any{"since": 1, "extra": true})
		requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOOBRPL0400")

		require.NoError(t, api.DB.Model(&outbox.Row{}).Where("1 = 1").Update("published_at", 1).Error)
		res = api.do(http.MethodPost, "/v1/envelopes/replay", root, map[string]any{"since": since, "detailType": outbox.EventDelete})
		require.Equal(t, http.StatusAccepted, res.Code, "%s", res.Raw)
		require.Equal(t, "NOOBRPL0000", res.JSON["responseCode"])
		require.Equal(t, float64(1), res.JSON["replay"].(map[string]any)["replayed"])
		pending := api.listEnvelopes("state=pending")
		require.Len(t, pending, 1)
		require.Equal(t, all[2]["envelopeId"], pending[0]["envelopeId"])

		res = api.do(http.MethodPost, "/v1/envelopes/replay", root, map[string]any{"since": all[0]["createdTime"]})
		require.Equal(t, http.StatusAccepted, res.Code, "%s", res.Raw)
		require.Len(t, api.listEnvelopes("state=pending"), 4, "all of them: since is inclusive")
	})
}

// TestFailedMutationsPublishNothing: a request refused by validation, by a
// unique name or by a stale If-Match leaves no envelope behind, while every
// successful one leaves exactly one.
func TestFailedMutationsPublishNothing(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, api *testAPI) {
		root := api.superAdmin()
		col := created(t, api.do(http.MethodPost, "/v1/collections", root, map[string]any{"name": "accounts"}), "collection")

		res := api.do(http.MethodPost, "/v1/collections", root, map[string]any{"name": ""})
		require.Equal(t, http.StatusBadRequest, res.Code, "%s", res.Raw)
		res = api.do(http.MethodPost, "/v1/collections", root, map[string]any{"name": "accounts"})
		require.Equal(t, http.StatusConflict, res.Code, "%s", res.Raw)
		res = api.do(http.MethodPatch, fmt.Sprintf("/v1/collections/%d", col), root, map[string]any{"description": "x"}, "If-Match", `"99"`)
		require.Equal(t, http.StatusPreconditionFailed, res.Code, "%s", res.Raw)
		res = api.do(http.MethodPost, fmt.Sprintf("/v1/collections/%d/events", col), root, map[string]any{"name": " padded "})
		require.Equal(t, http.StatusBadRequest, res.Code, "%s", res.Raw)

		all := api.listEnvelopes("")
		require.Len(t, all, 1, "only the successful create left an envelope")
		require.Equal(t, outbox.CollectionCreate, all[0]["detailType"])
	})
}

// TestAppRelayPublishesThroughTheConfiguredSink starts the service as main
// does, with outbox.sink eventbridge pointed at the fake and credentials from
// the standard chain (the environment): a mutation is published at once
// (the poll interval is an hour, so only the commit hook can explain it).
// Not parallel: it sets environment variables.
func TestAppRelayPublishesThroughTheConfiguredSink(t *testing.T) {
	fake := eventbridgetest.New(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	api := newAPI(t, "sqlite", func(c *config.Config) {
		c.Outbox.Sink = "eventbridge"
		c.Outbox.Endpoint = fake.URL
		c.Outbox.EventBusName = "notify-bus"
		c.Outbox.PollInterval = time.Hour
	})
	runComponents(t, api)

	root := api.superAdmin()
	created(t, api.do(http.MethodPost, "/v1/collections", root, map[string]any{"name": "accounts"}), "collection")
	require.Eventually(t, func() bool { return len(fake.Accepted()) == 1 }, 20*time.Second, 5*time.Millisecond)
	e := fake.Accepted()[0]
	require.Equal(t, "notificationservice", e.Source)
	require.Equal(t, "notify-bus", e.EventBusName)
	require.Equal(t, outbox.CollectionCreate, e.DetailType)
	require.Eventually(t, func() bool { return len(api.listEnvelopes("state=published")) == 1 }, 20*time.Second, 5*time.Millisecond)

	res := api.do(http.MethodGet, "/readyz", "", nil)
	require.Equal(t, "ok", res.JSON["checks"].(map[string]any)["outbox"])
}

// runComponents runs the service's components (the relay among them) until the test
// ends. Requests still go straight to the handler.
func runComponents(t testing.TB, api *testAPI) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.App.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
}

// TestOutboxFaultThroughTheAPI: 1,000 mutations through the REST API on
// PostgreSQL while the EventBridge fake fails 20% of entries and the relay
// is killed (its connections cut mid-claim) and restarted twice. At the end
// every mutation's envelope reached the fake at least once, and every
// envelope id is accounted for: none missing, none invented.
func TestOutboxFaultThroughTheAPI(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("the fault test takes a while; run without -short")
	}
	api := newAPI(t, "postgres")
	root := api.superAdmin()
	fake := eventbridgetest.New(t)
	fake.SetLatency(2 * time.Millisecond)
	fake.FailEntries(eventbridgetest.FailRate(0.2, "InternalFailure", 7))

	cfg := config.Default().Outbox
	cfg.PollInterval = 20 * time.Millisecond
	cfg.BackoffBase, cfg.BackoffMax = 5*time.Millisecond, 100*time.Millisecond
	cfg.ClaimSize = 30
	sink, err := outbox.NewEventBridge(context.Background(), outbox.EventBridgeConfig{
		Region: "us-east-1", Endpoint: fake.URL, Timeout: 5 * time.Second, Credentials: eventbridgetest.Credentials(),
	})
	require.NoError(t, err)

	// instance is one relay process: its own pool, tagged with an
	// application_name so the test can cut its connections as a crash would.
	type instance struct {
		name   string
		db     *gorm.DB
		cancel context.CancelFunc
		done   chan error
	}
	n := 0
	startInstance := func() *instance {
		n++
		name := fmt.Sprintf("relay_%d_%d", time.Now().UnixNano(), n)
		db, err := store.Open(context.Background(), config.Database{URL: api.cfg.Database.URL + "&application_name=" + name, MaxOpenConns: 4})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		in := &instance{name: name, db: db, cancel: cancel, done: make(chan error, 1)}
		r := outbox.NewRelay(db, sink, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
		go func() { in.done <- r.Run(ctx) }()
		return in
	}
	// kill ends an instance the way a crash does: PostgreSQL drops its
	// sessions (rolling back any claim in flight) before it can record
	// what it sent; only then does its goroutine stop.
	kill := func(in *instance) {
		require.NoError(t, api.DB.Exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ?`, in.name).Error)
		in.cancel()
		<-in.done
		_ = store.Close(in.db)
	}

	// The mutations: per group, create a collection and an event, update
	// both, delete the event (5 mutations); 200 groups from 4 clients.
	type mutation struct{ detailType, entityID string }
	var (
		mu        sync.Mutex
		mutations []mutation
		committed atomic.Int64
	)
	done := func(dt string, id int64) {
		mu.Lock()
		mutations = append(mutations, mutation{dt, fmt.Sprint(id)})
		mu.Unlock()
		committed.Add(1)
	}
	const groups, clients = 200, 4
	current := startInstance()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := range clients {
		wg.Go(func() {
			for g := c; g < groups; g += clients {
				if err := mutateGroup(api, root, g, done); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	// Kill the relay twice while mutations are still arriving.
	for _, at := range []int64{300, 650} {
		require.Eventually(t, func() bool { return committed.Load() >= at }, time.Minute, time.Millisecond)
		kill(current)
		current = startInstance()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	defer kill(current)
	require.Len(t, mutations, groups*5)

	require.Eventually(t, func() bool {
		var pending int64
		require.NoError(t, api.DB.Model(&outbox.Row{}).Where("published_at IS NULL").Count(&pending).Error)
		return pending == 0
	}, 2*time.Minute, 20*time.Millisecond, "the relay did not drain the outbox")

	var rows []outbox.Row
	require.NoError(t, api.DB.Order("id").Find(&rows).Error)
	require.Len(t, rows, len(mutations), "one envelope per mutation")
	counts := fake.Counts()
	byMutation := map[mutation]int{}
	duplicates := 0
	for _, r := range rows {
		require.Nil(t, r.ParkedAt, "envelope %s parked: %s", r.EnvelopeID, r.LastError)
		require.GreaterOrEqual(t, counts[r.EnvelopeID], 1, "envelope %s never reached the sink", r.EnvelopeID)
		duplicates += counts[r.EnvelopeID] - 1
		var d outbox.Detail
		require.NoError(t, json.Unmarshal([]byte(r.Detail), &d))
		require.Equal(t, r.EnvelopeID, d.EnvelopeID)
		byMutation[mutation{r.DetailType, d.ID}]++
	}
	for _, m := range mutations {
		require.Positive(t, byMutation[m], "mutation %v has no envelope", m)
		byMutation[m]--
	}
	known := idsOf(rows)
	for envelopeID := range counts {
		require.True(t, known[envelopeID], "the sink got envelope %s that no mutation made", envelopeID)
	}
	require.Empty(t, fake.Violations())
	t.Logf("%d mutations, %d envelopes, %d PutEvents calls, %d duplicate deliveries (at-least-once across kills)",
		len(mutations), len(rows), len(fake.Calls()), duplicates)
}

func idsOf(rows []outbox.Row) map[string]bool {
	out := make(map[string]bool, len(rows))
	for _, r := range rows {
		out[r.EnvelopeID] = true
	}
	return out
}

// mutateGroup makes five mutations through the API and reports each success.
func mutateGroup(api *testAPI, token string, g int, done func(detailType string, id int64)) error {
	expect := func(res response, code int) error {
		if res.Code != code {
			return fmt.Errorf("group %d: status %d: %s", g, res.Code, res.Raw)
		}
		return nil
	}
	id := func(res response, key string) int64 { return int64(res.JSON[key].(map[string]any)["id"].(float64)) }

	res := api.do(http.MethodPost, "/v1/collections", token, map[string]any{"name": fmt.Sprintf("fault-%d", g)})
	if err := expect(res, http.StatusCreated); err != nil {
		return err
	}
	col := id(res, "collection")
	done(outbox.CollectionCreate, col)
	res = api.do(http.MethodPost, fmt.Sprintf("/v1/collections/%d/events", col), token, map[string]any{"name": "USER_INVITEUSER"})
	if err := expect(res, http.StatusCreated); err != nil {
		return err
	}
	ev := id(res, "event")
	done(outbox.EventCreate, ev)
	res = api.do(http.MethodPatch, fmt.Sprintf("/v1/collections/%d/events/%d", col, ev), token, map[string]any{"description": "updated"})
	if err := expect(res, http.StatusOK); err != nil {
		return err
	}
	done(outbox.EventUpdate, ev)
	res = api.do(http.MethodPatch, fmt.Sprintf("/v1/collections/%d", col), token, map[string]any{"description": strings.Repeat("d", g%50)})
	if err := expect(res, http.StatusOK); err != nil {
		return err
	}
	done(outbox.CollectionUpdate, col)
	res = api.do(http.MethodDelete, fmt.Sprintf("/v1/collections/%d/events/%d", col, ev), token, nil)
	if err := expect(res, http.StatusOK); err != nil {
		return err
	}
	done(outbox.EventDelete, ev)
	return nil
}
