package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/app"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// scrape GETs /metrics and returns every sample as "name{labels}" → value,
// labels sorted by name as the exposition format writes them.
func scrape(t *testing.T, api *testAPI) map[string]float64 {
	t.Helper()
	res := api.do(http.MethodGet, "/metrics", "", nil)
	require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(res.Raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		var v float64
		_, err := fmt.Sscan(line[i+1:], &v)
		require.NoError(t, err, line)
		out[line[:i]] = v
	}
	return out
}

// series names a sample as the exposition format writes it.
func series(name string, labels ...string) string {
	if len(labels) == 0 {
		return name
	}
	type kv struct{ k, v string }
	var kvs []kv
	for i := 0; i+1 < len(labels); i += 2 {
		kvs = append(kvs, kv{labels[i], labels[i+1]})
	}
	sort.Slice(kvs, func(a, b int) bool { return kvs[a].k < kvs[b].k })
	parts := make([]string, len(kvs))
	for i, p := range kvs {
		parts[i] = fmt.Sprintf("%s=%q", p.k, p.v)
	}
	return name + "{" + strings.Join(parts, ",") + "}"
}

// TestMetricsCountTheWorkload scrapes /metrics after a known workload and
// finds exactly the counts it caused: HTTP requests by route and status,
// sandbox provider calls and messages, deliveries by channel and status, and
// the outbox backlog the (not running) relay left.
func TestMetricsCountTheWorkload(t *testing.T) {
	t.Parallel()
	eachDialectWith(t, func(c *config.Config) { c.Metrics.DBCacheTTL = 0 }, func(t *testing.T, api *testAPI) {
		const gets, missing, recipients = 5, 2, 7
		cid, _ := seedInvite(t, api)
		admin := api.superAdmin()
		for range gets {
			require.Equal(t, http.StatusOK, api.do(http.MethodGet, fmt.Sprintf("/v1/collections/%d", cid), admin, nil).Code)
		}
		for range missing {
			require.Equal(t, http.StatusNotFound, api.do(http.MethodGet, "/v1/collections/987654321", admin, nil).Code)
		}
		require.Equal(t, http.StatusUnauthorized, api.do(http.MethodGet, fmt.Sprintf("/v1/collections/%d", cid), "", nil).Code)

		var rcpts []string
		for i := range recipients {
			rcpts = append(rcpts, fmt.Sprintf(`{"email": "user%d@example.com", "macros": {"FNAME": "U%d"}}`, i, i))
		}
		body := `{"notification": [{"name": "USER_INVITEUSER", "recipients": [` + strings.Join(rcpts, ",") + `]}]}`
		res := api.do(http.MethodPost, fmt.Sprintf("/v1/collections/%d/notifications", cid), admin, body)
		require.Equal(t, http.StatusAccepted, res.Code, "body: %s", res.Raw)
		n, err := api.App.Dispatcher.RunOnce(context.Background())
		require.NoError(t, err)
		require.Equal(t, recipients, n)

		m := scrape(t, api)
		route := "/v1/collections/:collectionId"
		for s, want := range map[string]float64{
			series("notify_http_requests_total", "method", "GET", "route", route, "status", "200"):                   gets,
			series("notify_http_requests_total", "method", "GET", "route", route, "status", "404"):                   missing,
			series("notify_http_requests_total", "method", "GET", "route", route, "status", "401"):                   1,
			series("notify_http_requests_total", "method", "POST", "route", route+"/notifications", "status", "202"): 1,
			series("notify_http_request_duration_seconds_count", "method", "GET", "route", route):                    gets + missing + 1,
			series("notify_provider_messages_total", "channel", "email", "provider", "sandbox"):                      recipients,
			series("notify_provider_call_duration_seconds_count", "channel", "email", "provider", "sandbox"):         1,
			series("notify_deliveries", "channel", "email", "status", "sent"):                                        recipients,
			series("notify_outbox_pending"): 1, // the send envelope
			series("notify_outbox_parked"):  0,
			series("notify_metrics_db_up"):  1,
		} {
			require.Contains(t, m, s)
			require.Equal(t, want, m[s], s)
		}
		require.Greater(t, m[series("notify_outbox_oldest_pending_age_seconds")], -0.001)
		// The series alerts rely on exist from the start, at zero, for every
		// channel's provider and the configured sink (docs/runbook.md).
		zero := []string{series("notify_outbox_publish_errors_total", "class", "unavailable", "sink", "log")}
		for _, ch := range []string{"email", "sms", "push"} {
			zero = append(zero,
				series("notify_provider_errors_total", "channel", ch, "class", "permanent", "provider", "sandbox"),
				series("notify_provider_errors_total", "channel", ch, "class", "retryable", "provider", "sandbox"),
				series("notify_retry_queue_depth", "channel", ch),
				series("notify_deliveries", "channel", ch, "status", "failed"))
		}
		for _, s := range zero {
			require.Contains(t, m, s)
			require.Zero(t, m[s], s)
		}
	})
}

// TestMetricsServeOpenMetricsWhenAsked: a scraper that accepts OpenMetrics
// (Prometheus by default) gets it; any other gets the Prometheus text format.
func TestMetricsServeOpenMetricsWhenAsked(t *testing.T) {
	t.Parallel()
	api := newAPI(t, "sqlite")
	get := func(accept string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		rec := httptest.NewRecorder()
		api.App.HTTP.ServeHTTP(rec, req)
		require.Equal(t, http.StatusOK, rec.Code)
		return rec
	}
	// What Prometheus 2.x and 3.x send.
	rec := get("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
	require.True(t, strings.HasPrefix(rec.Header().Get("Content-Type"), "application/openmetrics-text; version=1.0.0"), rec.Header().Get("Content-Type"))
	require.True(t, strings.HasSuffix(rec.Body.String(), "# EOF\n"), "an OpenMetrics exposition ends with # EOF")
	require.Contains(t, rec.Body.String(), `notify_provider_errors_total{channel="sms",class="permanent",provider="sandbox"} 0.0`)

	for _, accept := range []string{"", "text/plain", "*/*"} {
		rec = get(accept)
		require.True(t, strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain; version=0.0.4"), "Accept %q: %s", accept, rec.Header().Get("Content-Type"))
		require.NotContains(t, rec.Body.String(), "# EOF")
	}
}

// eachDialectWith is eachDialect with a config change.
func eachDialectWith(t *testing.T, mutate func(*config.Config), fn func(t *testing.T, api *testAPI)) {
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			fn(t, newAPI(t, d, mutate))
		})
	}
}

// syncBuffer collects log output written from many goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// servedAPI is the whole service built by app.New with a logger of the
// test's, served on a loopback port with every component running.
type servedAPI struct {
	*testAPI
	URL string
}

func serveAPI(t *testing.T, dialect string, logs io.Writer, opts []app.Option, mutate ...func(*config.Config)) *servedAPI {
	t.Helper()
	cfg := config.Default()
	cfg.AMQP.Enabled = false
	cfg.Log.Level = "debug"
	cfg.Dispatch.PollInterval = 50 * time.Millisecond
	cfg.Outbox.PollInterval = 50 * time.Millisecond
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
	a, err := app.New(context.Background(), cfg, app.NewLogger(cfg.Log, logs), opts...)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
		a.Close()
	})
	return &servedAPI{testAPI: &testAPI{t: t, App: a, DB: a.DB, cfg: cfg}, URL: "http://" + ln.Addr().String()}
}

// call sends a real HTTP request to the served service.
func (s *servedAPI) call(method, path, token, body string) (int, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	require.NoError(s.t, err)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	addIdempotencyKey(req)
	res, err := http.DefaultClient.Do(req)
	require.NoError(s.t, err)
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	require.NoError(s.t, err)
	return res.StatusCode, raw
}

// fakeProvider answers every request with a client error that quotes the
// recipient back, as real providers do ("The 'To' number … is not valid").
func fakeProvider(t *testing.T, status int, body string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestLogsNeverCarrySecretsOrFullAddresses drives a realistic workload
// through the served service (admin API calls with a real token, a send to
// email and SMS recipients, provider failures that quote the recipients
// back, the envelope on the log sink) and checks that no log line contains
// the token, a configured secret, or a full email address or phone number,
// while the lines that matter are there, masked.
func TestLogsNeverCarrySecretsOrFullAddresses(t *testing.T) {
	t.Parallel()
	const (
		sendGridKey = "SG.test-key-0123456789abcdef.ghijklmnopqrstuvwxyz0123456789"
		twilioToken = "0123456789abcdef0123456789abcdef"
		hmacSecret  = "observability-test-hmac-secret-0123456789"
		email       = "jane.doe@example.com"
		phone       = "+14155550123"
		email2      = "externalevents1709786394020@gmail.com"
		phone2      = "409-685-4167"
	)
	sendgrid := fakeProvider(t, http.StatusBadRequest,
		`{"errors":[{"message":"Does not contain a valid address: `+email+`","field":"personalizations.0.to.0.email"}]}`)
	twilio := fakeProvider(t, http.StatusBadRequest,
		`{"code":21211,"message":"The 'To' number `+phone+` is not a valid phone number.","status":400}`)
	var logs syncBuffer
	api := serveAPI(t, "sqlite", &logs, nil, func(c *config.Config) {
		c.Auth.HMACSecret = hmacSecret
		c.Channels.SendGrid.APIKey = sendGridKey
		c.Channels.SendGrid.BaseURL = sendgrid.URL
		c.Channels.SendGrid.FromEmail = "noreply@example.com"
		c.Channels.Twilio.AccountSID = "AC0123456789abcdef0123456789abcdef"
		c.Channels.Twilio.AuthToken = twilioToken
		c.Channels.Twilio.BaseURL = twilio.URL
		c.Channels.Twilio.From = "+15005550006"
		c.Channels.Twilio.DefaultCountryCode = "1"
		c.Channels.Twilio.RatePerSecond = 0
	})
	token := api.superAdmin()

	// The admin API: a collection, its event, an email and an SMS action.
	code, raw := api.call(http.MethodPost, "/v1/collections", token, `{"name": "`+testdb.Name("obs")+`", "description": "d", "status": "ACTIVE"}`)
	require.Equal(t, http.StatusCreated, code, "%s", raw)
	cid := createdID(t, raw, "collection")
	code, raw = api.call(http.MethodPost, fmt.Sprintf("/v1/collections/%d/events", cid), token, `{"name": "USER_INVITEUSER", "description": "d", "status": "ACTIVE"}`)
	require.Equal(t, http.StatusCreated, code, "%s", raw)
	eid := createdID(t, raw, "event")
	for _, body := range []string{
		fmt.Sprintf(`{"eventId": %d, "name": "mail", "status": "ACTIVE", "configName": "SendEmailConfig", "config": {"subject": "Hi {{FNAME}}", "text": "Welcome {{FNAME}}"}}`, eid),
		fmt.Sprintf(`{"eventId": %d, "name": "sms", "status": "ACTIVE", "configName": "SendSmsConfig", "config": {"body": "Hi {{FNAME}}"}}`, eid),
	} {
		code, raw = api.call(http.MethodPost, fmt.Sprintf("/v1/collections/%d/actions", cid), token, body)
		require.Equal(t, http.StatusCreated, code, "%s", raw)
	}
	// A bad token is logged too.
	code, _ = api.call(http.MethodGet, "/v1/collections", "not-a-token", "")
	require.Equal(t, http.StatusUnauthorized, code)

	// A send to email and phone recipients; both providers refuse.
	send := fmt.Sprintf(`{"notification": [{"name": "USER_INVITEUSER", "recipients": [
	  {"email": %q, "phone": %q, "pushId": "hj7sdf67sqc9", "macros": {"FNAME": "Jane"}},
	  {"email": %q, "phone": %q, "macros": {"FNAME": "John"}}]}]}`, email, phone, email2, phone2)
	code, raw = api.call(http.MethodPost, fmt.Sprintf("/v1/collections/%d/notifications", cid), token, send)
	require.Equal(t, http.StatusAccepted, code, "%s", raw)

	// Wait until all four deliveries have failed and the send envelope is
	// on the log sink.
	require.Eventually(t, func() bool {
		var failed int64
		require.NoError(t, api.DB.Raw("SELECT COUNT(*) FROM deliveries WHERE status = 'failed'").Scan(&failed).Error)
		return failed == 4 && strings.Contains(logs.String(), "notificationservice/notifications/send")
	}, 30*time.Second, 50*time.Millisecond, "logs so far:\n%s", logs.String())

	out := logs.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Greater(t, len(lines), 10)
	national := regexp.MustCompile(`4155550123|409.?685.?4167`)
	for _, line := range lines {
		require.True(t, json.Valid([]byte(line)), "not a JSON line: %s", line)
		for _, secret := range []string{token, hmacSecret, sendGridKey, twilioToken, email, email2, phone} {
			require.NotContains(t, line, secret)
		}
		require.NotRegexp(t, national, line)
	}
	// What must be there is there, masked.
	require.Contains(t, out, `"msg":"delivery refused by provider"`)
	require.Contains(t, out, "j***@example.com", "the provider's reason is logged with the address masked")
	require.Contains(t, out, "+*******0123")
	require.Contains(t, out, `"e***@gmail.com"`, "the envelope on the log sink has its recipients masked")
	require.Contains(t, out, `"***-***-4167"`)
	require.Regexp(t, `"msg":"http request".*"route":"/v1/collections/:collectionId/notifications".*"status":202`, out)
}

// createdID reads data.<entity>.id or <entity>.id or id from a create response.
func createdID(t *testing.T, raw []byte, entity string) int64 {
	t.Helper()
	var body map[string]any
	require.NoError(t, json.Unmarshal(raw, &body))
	for _, m := range []any{body[entity], body["data"], body} {
		obj, ok := m.(map[string]any)
		if !ok {
			continue
		}
		if inner, ok := obj[entity].(map[string]any); ok {
			obj = inner
		}
		if id, ok := obj["id"].(float64); ok {
			return int64(id)
		}
	}
	require.Fail(t, "no id", "%s", raw)
	return 0
}
