package httpapi_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/app"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/httpapi"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// testAPI is the whole service, wired by app.New exactly as main wires it, on
// a database of the test's own. Requests go straight to the handler.
type testAPI struct {
	t   testing.TB
	App *app.App
	DB  *gorm.DB
	cfg config.Config
}

// newAPI builds the service on dialect "sqlite" or "postgres". Queue
// consumption is off; tests of the queue wire their own.
func newAPI(t testing.TB, dialect string, mutate ...func(*config.Config)) *testAPI {
	t.Helper()
	cfg := config.Default()
	cfg.AMQP.Enabled = false
	cfg.Log.Level = "error"
	switch dialect {
	case "postgres":
		_, url := testdb.Postgres(t)
		cfg.Database.URL = url
	default:
		_, path := testdb.SQLite(t)
		cfg.Database.SQLitePath = path
	}
	for _, m := range mutate {
		m(&cfg)
	}
	require.NoError(t, cfg.Validate())
	// The tests read what the workers sent from the sandbox's memory.
	a, err := app.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)),
		app.WithSandboxOptions(channels.SandboxKeepAll()))
	require.NoError(t, err)
	t.Cleanup(a.Close)
	return &testAPI{t: t, App: a, DB: a.DB, cfg: cfg}
}

// eachDialect runs fn against the service on SQLite and on PostgreSQL.
func eachDialect(t *testing.T, fn func(t *testing.T, api *testAPI)) {
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			fn(t, newAPI(t, d))
		})
	}
}

// token mints a token for user "1" (unless p says otherwise).
func (a *testAPI) token(p auth.Principal) string {
	a.t.Helper()
	if p.UserID == "" {
		p.UserID = "1"
	}
	if p.Channel == "" {
		p.Channel = "CSR"
	}
	tok, err := auth.Mint(a.cfg.Auth, p, time.Hour, time.Now())
	require.NoError(a.t, err)
	return tok
}

// superAdmin is a token for a super admin.
func (a *testAPI) superAdmin() string {
	return a.token(auth.Principal{Roles: []string{auth.RoleSuperAdmin}})
}

// response is a recorded response with its body decoded as JSON.
type response struct {
	Code   int
	Header http.Header
	Raw    []byte
	JSON   map[string]any
}

// do sends a request. body may be nil, a string or []byte (sent as is), or
// any value (sent as JSON). headers are name, value pairs.
func (a *testAPI) do(method, path, token string, body any, headers ...string) response {
	a.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		require.NoError(a.t, err)
		r = bytes.NewReader(raw)
	}
	req := httptest.NewRequest(method, path, r)
	if r != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	addIdempotencyKey(req)
	rec := httptest.NewRecorder()
	a.App.HTTP.ServeHTTP(rec, req)
	res := response{Code: rec.Code, Header: rec.Header(), Raw: rec.Body.Bytes()}
	if len(res.Raw) > 0 && strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		require.NoError(a.t, json.Unmarshal(res.Raw, &res.JSON), "body: %s", res.Raw)
	}
	return res
}

// sendPath is the REST send route's path.
var sendPath = regexp.MustCompile(`^/v1/collections/[^/]+/notifications/?$`)

// addIdempotencyKey gives a send request that names no Idempotency-Key a
// unique one, as the route requires (http.requireIdempotencyKey). A test
// of the missing key sends the header empty, which the route treats as
// missing.
func addIdempotencyKey(req *http.Request) {
	if req.Method != http.MethodPost || !sendPath.MatchString(req.URL.Path) {
		return
	}
	if _, named := req.Header[http.CanonicalHeaderKey(httpapi.IdempotencyKeyHeader)]; !named {
		req.Header.Set(httpapi.IdempotencyKeyHeader, "test-"+rand.Text())
	}
}

// requireError asserts the standard error body.
func requireError(t testing.TB, res response, code int, status, responseCode string) {
	t.Helper()
	require.Equal(t, code, res.Code, "body: %s", res.Raw)
	require.Equal(t, status, res.JSON["status"], "body: %s", res.Raw)
	require.Equal(t, responseCode, res.JSON["responseCode"], "body: %s", res.Raw)
	require.NotEmpty(t, res.JSON["responseMessage"], "body: %s", res.Raw)
	require.Equal(t, res.JSON["responseMessage"], res.JSON["message"], "message repeats responseMessage (seed 004): %s", res.Raw)
	require.IsType(t, []any{}, res.JSON["details"], "details must be an array: %s", res.Raw)
}

// details returns the error body's details as field → reason.
func details(res response) map[string]string {
	out := map[string]string{}
	ds, _ := res.JSON["details"].([]any)
	for _, d := range ds {
		m, _ := d.(map[string]any)
		f, _ := m["field"].(string)
		r, _ := m["reason"].(string)
		out[f] = r
	}
	return out
}
