package httpapi_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/auth"
)

// The admin API benchmarks (docs/benchmarks.md, "Admin API"). Each runs its
// loop sequentially (b.Loop, one request at a time) against PostgreSQL, so a
// figure is the latency of one request and its inverse the rate of one
// client. The Bare* benchmarks are the baselines: a bare Gin engine (no
// middleware, no auth) answering the same JSON, either straight from the
// database with one hand-written database/sql statement (BareGin...) or from
// memory (BareGin...Static, the ceiling of the framework alone).
//
//	go test -run '^$' -bench . -benchmem ./internal/httpapi/

// benchFixture is the service (on PostgreSQL unless a benchmark names
// SQLite) with a collection, an event and one email action, plus a token for
// an admin of the collection.
type benchFixture struct {
	api    *testAPI
	coll   int64
	event  int64
	action actions.Action
	token  string
	sqlDB  *sql.DB
}

func newBenchFixture(b *testing.B, dialect ...string) *benchFixture {
	b.Helper()
	d := "postgres"
	if len(dialect) > 0 {
		d = dialect[0]
	}
	api := newAPI(b, d)
	f := &benchFixture{api: api}
	f.coll = seedCollection(b, api.DB)
	f.event = seedEvent(b, api.DB, f.coll, "USER_INVITEUSER")
	f.token = api.token(auth.Principal{UserID: "1", Roles: []string{auth.RoleAdmin}, Collections: []int64{f.coll}})
	res := api.do(http.MethodPost, fmt.Sprintf("/v1/collections/%d/actions", f.coll), f.token, createBody(f.event, "Send Reset Email"))
	require.Equal(b, http.StatusCreated, res.Code, "body: %s", res.Raw)
	var env actions.Envelope
	require.NoError(b, json.Unmarshal(res.Raw, &env))
	f.action = env.Action
	var err error
	f.sqlDB, err = api.DB.DB()
	require.NoError(b, err)
	return f
}

func createBody(event int64, name string) []byte {
	body, _ := json.Marshal(map[string]any{
		"name":        name,
		"description": "Used to Send Reset Email",
		"eventId":     event,
		"configName":  actions.ConfigEmail,
		"template":    "d-1257a7b8169f4d84aa3393cb4437cbcf",
	})
	return body
}

// serve runs one request through h and fails the benchmark on an unexpected status.
func serve(b *testing.B, h http.Handler, method, path, token string, body []byte, want int) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req := httptest.NewRequest(method, path, r)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	addIdempotencyKey(req)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != want {
		b.Fatalf("%s %s: %d %s", method, path, rec.Code, rec.Body)
	}
}

// bareEngine is Gin with nothing added: no request id, log, recovery, auth
// or error mapping.
func bareEngine() *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	return gin.New()
}

const selectAction = `SELECT id, collection_id, name, status, description, event_id, config_name, template, config,
version, created_by, updated_by, updated_time, created_time FROM actions WHERE id = $1 AND collection_id = $2`

// BenchmarkGetAction runs the invalidation listener, so the action cache is
// live and every GET after the first is a cache hit (docs/api.md, "Caching
// and consistency").
func BenchmarkGetAction(b *testing.B) {
	f := newBenchFixture(b)
	listen(b, f.api)
	path := fmt.Sprintf("/v1/collections/%d/actions/%d", f.coll, f.action.ID)
	serve(b, f.api.App.HTTP, http.MethodGet, path, f.token, nil, http.StatusOK)
	before := f.api.App.ActionCache.Stats()
	for b.Loop() {
		serve(b, f.api.App.HTTP, http.MethodGet, path, f.token, nil, http.StatusOK)
	}
	if after := f.api.App.ActionCache.Stats(); after.Misses != before.Misses {
		b.Fatalf("%d cache misses in the loop", after.Misses-before.Misses)
	}
}

// BenchmarkGetActionUncached is the same request with the cache off (no
// listener, as while it is disconnected): one query per GET.
func BenchmarkGetActionUncached(b *testing.B) { getUncached(b, newBenchFixture(b)) }

// BenchmarkSQLiteGetActionUncached is the uncached GET on the embedded SQLite
// database (the default configuration): one query through the SQLite driver
// per request. On SQLite the cache is live from the start (one instance owns
// the file), so it is switched off here by hand. Together with
// BenchmarkSQLiteCreateAction it is what a SQLite driver change is compared
// on (docs/benchmarks.md, "SQLite driver").
func BenchmarkSQLiteGetActionUncached(b *testing.B) {
	f := newBenchFixture(b, "sqlite")
	f.api.App.ActionCache.Reset(false)
	getUncached(b, f)
}

func getUncached(b *testing.B, f *benchFixture) {
	path := fmt.Sprintf("/v1/collections/%d/actions/%d", f.coll, f.action.ID)
	for b.Loop() {
		serve(b, f.api.App.HTTP, http.MethodGet, path, f.token, nil, http.StatusOK)
	}
	if f.api.App.ActionCache.Stats().Hits != 0 {
		b.Fatal("the cache served without its listener")
	}
}

// listen runs the service's invalidation listener (and only it) until the
// benchmark ends, and waits until the action cache is live.
func listen(b *testing.B, api *testAPI) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.App.Invalidation.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		require.NoError(b, <-done)
	})
	// The fixture's writes committed before the listener connected, so no
	// notification of theirs can land in the loop.
	require.Eventually(b, api.App.Invalidation.Live, 10*time.Second, 5*time.Millisecond)
}

func BenchmarkBareGinGetAction(b *testing.B) {
	f := newBenchFixture(b)
	e := f.bareQuery()
	path := fmt.Sprintf("/v1/collections/%d/actions/%d", f.coll, f.action.ID)
	for b.Loop() {
		serve(b, e, http.MethodGet, path, "", nil, http.StatusOK)
	}
}

// bareQuery is the bare Gin handler answering GET action with one
// hand-written query.
func (f *benchFixture) bareQuery() *gin.Engine {
	e := bareEngine()
	e.GET("/v1/collections/:collectionId/actions/:actionId", func(c *gin.Context) {
		cid, _ := strconv.ParseInt(c.Param("collectionId"), 10, 64)
		id, _ := strconv.ParseInt(c.Param("actionId"), 10, 64)
		var a actions.Action
		err := f.sqlDB.QueryRowContext(c.Request.Context(), selectAction, id, cid).Scan(&a.ID, &a.CollectionID, &a.Name,
			&a.Status, &a.Description, &a.EventID, &a.ConfigName, &a.Template, &a.Config, &a.Version, &a.CreatedBy,
			&a.UpdatedBy, &a.UpdatedTime, &a.CreatedTime)
		if err != nil {
			c.Status(http.StatusInternalServerError)
			return
		}
		c.JSON(http.StatusOK, actions.Envelope{Action: a})
	})
	return e
}

func BenchmarkBareGinGetActionStatic(b *testing.B) {
	f := newBenchFixture(b)
	e := f.bareStatic()
	path := fmt.Sprintf("/v1/collections/%d/actions/%d", f.coll, f.action.ID)
	for b.Loop() {
		serve(b, e, http.MethodGet, path, "", nil, http.StatusOK)
	}
}

// bareStatic is the bare Gin handler answering GET action from memory.
func (f *benchFixture) bareStatic() *gin.Engine {
	e := bareEngine()
	e.GET("/v1/collections/:collectionId/actions/:actionId", func(c *gin.Context) {
		c.JSON(http.StatusOK, actions.Envelope{Action: f.action})
	})
	return e
}

// BenchmarkGetActionPaired serves, in every iteration, one GET through the
// whole service (cache live), one through the bare in-memory handler and one
// through the bare one-query handler, and times each. On a shared machine
// whose load swings within seconds the three then see the same load, so
// their ratios mean more than those of benchmarks run one after another.
// ns/op is the three together; the per-path figures are custom metrics:
// time per request (service-ns, static-ns, query-ns) and the service's rate
// as a percentage of each bare handler's (%static, %query).
func BenchmarkGetActionPaired(b *testing.B) {
	f := newBenchFixture(b)
	listen(b, f.api)
	static, query := f.bareStatic(), f.bareQuery()
	path := fmt.Sprintf("/v1/collections/%d/actions/%d", f.coll, f.action.ID)
	serve(b, f.api.App.HTTP, http.MethodGet, path, f.token, nil, http.StatusOK)
	before := f.api.App.ActionCache.Stats()
	var svc, st, q time.Duration
	for b.Loop() {
		t0 := time.Now()
		serve(b, f.api.App.HTTP, http.MethodGet, path, f.token, nil, http.StatusOK)
		t1 := time.Now()
		serve(b, static, http.MethodGet, path, "", nil, http.StatusOK)
		t2 := time.Now()
		serve(b, query, http.MethodGet, path, "", nil, http.StatusOK)
		t3 := time.Now()
		svc, st, q = svc+t1.Sub(t0), st+t2.Sub(t1), q+t3.Sub(t2)
	}
	if after := f.api.App.ActionCache.Stats(); after.Misses != before.Misses {
		b.Fatalf("%d cache misses in the loop", after.Misses-before.Misses)
	}
	n := float64(b.N)
	b.ReportMetric(float64(svc)/n, "service-ns")
	b.ReportMetric(float64(st)/n, "static-ns")
	b.ReportMetric(float64(q)/n, "query-ns")
	b.ReportMetric(100*float64(st)/float64(svc), "%static")
	b.ReportMetric(100*float64(q)/float64(svc), "%query")
}

func BenchmarkCreateAction(b *testing.B) { createActions(b, newBenchFixture(b)) }

// BenchmarkSQLiteCreateAction is create on the embedded SQLite database: one
// write transaction (BEGIN IMMEDIATE ... COMMIT in WAL mode) per request.
func BenchmarkSQLiteCreateAction(b *testing.B) { createActions(b, newBenchFixture(b, "sqlite")) }

func createActions(b *testing.B, f *benchFixture) {
	path := fmt.Sprintf("/v1/collections/%d/actions", f.coll)
	i := 0
	for b.Loop() {
		i++
		serve(b, f.api.App.HTTP, http.MethodPost, path, f.token, createBody(f.event, "bench "+strconv.Itoa(i)), http.StatusCreated)
	}
}

func BenchmarkBareGinCreate(b *testing.B) {
	f := newBenchFixture(b)
	e := bareEngine()
	e.POST("/v1/collections/:collectionId/actions", func(c *gin.Context) {
		cid, _ := strconv.ParseInt(c.Param("collectionId"), 10, 64)
		var in actions.Input
		if err := c.ShouldBindJSON(&in); err != nil {
			c.Status(http.StatusBadRequest)
			return
		}
		a := actions.Action{CollectionID: cid, Name: in.Name, Status: actions.StatusActive, Description: in.Description,
			EventID: in.EventID, ConfigName: in.ConfigName, Template: in.Template, Config: in.Config,
			UpdatedTime: f.action.UpdatedTime, CreatedTime: f.action.CreatedTime}
		err := f.sqlDB.QueryRowContext(c.Request.Context(), `INSERT INTO actions (collection_id, name, status, description,
event_id, config_name, template, config, created_time, updated_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id`,
			a.CollectionID, a.Name, a.Status, a.Description, a.EventID, a.ConfigName, a.Template, a.Config,
			a.CreatedTime, a.UpdatedTime).Scan(&a.ID)
		if err != nil {
			c.Status(http.StatusInternalServerError)
			return
		}
		c.JSON(http.StatusCreated, actions.Envelope{Action: a})
	})
	path := fmt.Sprintf("/v1/collections/%d/actions", f.coll)
	i := 0
	for b.Loop() {
		i++
		serve(b, e, http.MethodPost, path, "", createBody(f.event, "bench "+strconv.Itoa(i)), http.StatusCreated)
	}
}

func BenchmarkBareGinCreateStatic(b *testing.B) {
	f := newBenchFixture(b)
	e := bareEngine()
	e.POST("/v1/collections/:collectionId/actions", func(c *gin.Context) {
		var in actions.Input
		if err := c.ShouldBindJSON(&in); err != nil {
			c.Status(http.StatusBadRequest)
			return
		}
		c.JSON(http.StatusCreated, actions.Envelope{Action: f.action})
	})
	path := fmt.Sprintf("/v1/collections/%d/actions", f.coll)
	i := 0
	for b.Loop() {
		i++
		serve(b, e, http.MethodPost, path, "", createBody(f.event, "bench "+strconv.Itoa(i)), http.StatusCreated)
	}
}
