package config_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/config"
)

func TestDefaultsAreValid(t *testing.T) {
	t.Parallel()
	require.NoError(t, config.Default().Validate())
}

// The shipped config/config.yaml must load, and only restate defaults: the
// embedded set-up is the same with or without the file.
func TestShippedFileMatchesDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load("../../config/config.yaml", nil)
	require.NoError(t, err)
	require.Equal(t, config.Default(), cfg)
}

func TestFileThenEnvOverride(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "c.yaml")
	require.NoError(t, os.WriteFile(path, []byte("http:\n  addr: 0.0.0.0:9000\n  shutdownTimeout: 3s\nlog:\n  level: debug\n"), 0o600))

	cfg, err := config.Load(path, []string{
		"NOTIFY_LOG_LEVEL=warn",                     // env beats file
		"NOTIFY_DATABASE_URL=postgres://u@h:5432/d", // single underscores
		"NOTIFY_HTTP_MAX_BODY_BYTES=2048",           // camelCase key
		"NOTIFY_AMQP__PREFETCH=7",                   // double underscores work too
		"OTHER_VAR=ignored",
	})
	require.NoError(t, err)
	require.Equal(t, "0.0.0.0:9000", cfg.HTTP.Addr)
	require.Equal(t, 3*time.Second, cfg.HTTP.ShutdownTimeout)
	require.Equal(t, "warn", cfg.Log.Level)
	require.True(t, cfg.Database.Postgres())
	require.EqualValues(t, 2048, cfg.HTTP.MaxBodyBytes)
	require.Equal(t, 7, cfg.AMQP.Prefetch)
}

func TestMissingFileMeansDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load(filepath.Join(t.TempDir(), "absent.yaml"), nil)
	require.NoError(t, err)
	require.Equal(t, config.Default(), cfg)
}

// Every invalid setting stops start-up with a message that names the key and
// its environment variable.
func TestInvalidConfigNamesTheKey(t *testing.T) {
	t.Parallel()
	cases := []struct {
		env  string
		want string
	}{
		{"NOTIFY_HTTP_ADDR=nonsense", "http.addr (NOTIFY_HTTP_ADDR)"},
		{"NOTIFY_LOG_LEVEL=loud", "log.level (NOTIFY_LOG_LEVEL)"},
		{"NOTIFY_DATABASE_URL=mysql://x", "database.url (NOTIFY_DATABASE_URL)"},
		{"NOTIFY_AUTH_HMAC_SECRET=short", "auth.hmacSecret (NOTIFY_AUTH_HMAC_SECRET)"},
		{"NOTIFY_OUTBOX_SINK=kafka", "outbox.sink (NOTIFY_OUTBOX_SINK)"},
		{"NOTIFY_AMQP_PREFETCH=0", "amqp.prefetch (NOTIFY_AMQP_PREFETCH)"},
		{"NOTIFY_HTTP_SHUTDOWN_TIMEOUT=soon", "shutdownTimeout"},
		{"NOTIFY_HTTP_SEND_BATCH_WAIT=5s", "http.sendBatchWait (NOTIFY_HTTP_SEND_BATCH_WAIT)"},
		{"NOTIFY_HTTP_SEND_BATCH_MAX=0", "http.sendBatchMax (NOTIFY_HTTP_SEND_BATCH_MAX)"},
		{"NOTIFY_HTTP_SEND_BATCH_CONCURRENCY=0", "http.sendBatchConcurrency (NOTIFY_HTTP_SEND_BATCH_CONCURRENCY)"},
		{"NOTIFY_HTTP_REPORT_BATCH_WAIT=5s", "http.reportBatchWait (NOTIFY_HTTP_REPORT_BATCH_WAIT)"},
		{"NOTIFY_HTTP_REPORT_BATCH_MAX=0", "http.reportBatchMax (NOTIFY_HTTP_REPORT_BATCH_MAX)"},
		{"NOTIFY_HTTP_REPORT_BATCH_CONCURRENCY=0", "http.reportBatchConcurrency (NOTIFY_HTTP_REPORT_BATCH_CONCURRENCY)"},
		{"NOTIFY_DATABSE_URL=postgres://x", "unknown environment variable NOTIFY_DATABSE_URL"},
	}
	for _, tc := range cases {
		t.Run(tc.env, func(t *testing.T) {
			_, err := config.Load("", []string{tc.env})
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

// Validate asks every section to check itself: one invalid setting in each
// section (first and last check of the longer ones) is reported with its key
// and environment variable, so a section Validate forgets to call is caught.
func TestValidateChecksEverySection(t *testing.T) {
	t.Parallel()
	cases := []struct {
		key   string
		spoil func(*config.Config)
	}{
		{"http.maxBodyBytes", func(c *config.Config) { c.HTTP.MaxBodyBytes = 0 }},
		{"database.busyTimeout", func(c *config.Config) { c.Database.BusyTimeout = 0 }},
		{"auth.leeway", func(c *config.Config) { c.Auth.Leeway = -time.Second }},
		{"log.format", func(c *config.Config) { c.Log.Format = "xml" }},
		{"outbox.retention", func(c *config.Config) { c.Outbox.Retention = -time.Second }},
		{"dispatch.maxScheduleAhead", func(c *config.Config) { c.Dispatch.MaxScheduleAhead = 0 }},
		{"templates.maxSteps", func(c *config.Config) { c.Templates.MaxSteps = 0 }},
		{"templates.renderTimeout", func(c *config.Config) { c.Templates.RenderTimeout = 0 }},
		{"preview.ratePerMinute", func(c *config.Config) { c.Preview.RatePerMinute = 0 }},
		{"amqp.reconnectMin", func(c *config.Config) { c.AMQP.Enabled, c.AMQP.ReconnectMin = true, 0 }},
		{"dispatch.workers", func(c *config.Config) { c.Dispatch.Workers = 0 }},
		{"dispatch.recordBatch", func(c *config.Config) { c.Dispatch.RecordBatch = 0 }},
		{"channels.breakerCooldown", func(c *config.Config) { c.Channels.BreakerCooldown = 0 }},
		{"metrics.dbCacheTTL", func(c *config.Config) { c.Metrics.DBCacheTTL = -time.Second }},
		{"tracing.sampleRatio", func(c *config.Config) { c.Tracing.SampleRatio = 2 }},
		{"tracing.endpoint", func(c *config.Config) { c.Tracing.Enabled, c.Tracing.Endpoint = true, "" }},
	}
	for _, tc := range cases {
		t.Run(tc.key, func(t *testing.T) {
			cfg := config.Default()
			tc.spoil(&cfg)
			require.ErrorContains(t, cfg.Validate(), tc.key+" ("+config.EnvName(tc.key)+")")
		})
	}
}

func TestUnknownFileKeyIsAnError(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "c.yaml")
	require.NoError(t, os.WriteFile(path, []byte("http:\n  adr: x\n"), 0o600))
	_, err := config.Load(path, nil)
	require.ErrorContains(t, err, "adr")
}

func TestEnvName(t *testing.T) {
	t.Parallel()
	require.Equal(t, "NOTIFY_DATABASE_URL", config.EnvName("database.url"))
	require.Equal(t, "NOTIFY_HTTP_MAX_BODY_BYTES", config.EnvName("http.maxBodyBytes"))
	require.Equal(t, "NOTIFY_CHANNELS_SENDGRID_API_KEY", config.EnvName("channels.sendgrid.apiKey"))
}

// docs/configuration.md documents every key, and only real keys: the table
// cannot drift from the struct.
func TestConfigurationReferenceIsComplete(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/configuration.md")
	require.NoError(t, err)
	row := regexp.MustCompile("(?m)^\\| `([a-zA-Z0-9.]+)` \\| `(NOTIFY_[A-Z0-9_]+)` \\|")
	documented := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = m[2]
	}
	keys := config.Keys()
	for _, k := range keys {
		env, ok := documented[k]
		require.True(t, ok, "docs/configuration.md has no row for %s", k)
		require.Equal(t, config.EnvName(k), env, "wrong env var for %s", k)
	}
	known := strings.Join(keys, "\n") + "\n"
	for k := range documented {
		require.Contains(t, known, k+"\n", "docs/configuration.md documents %s, which is not a config key", k)
	}
}

// The test suite's own variables (README: make test with
// NOTIFY_TEST_DATABASE_URL) must not stop the service from loading its
// configuration, while a typo of a real key still does.
func TestTestVariablesAreIgnored(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load("", []string{
		"NOTIFY_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable",
		"NOTIFY_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/",
	})
	require.NoError(t, err)
	require.Equal(t, config.Default(), cfg)

	_, err = config.Load("", []string{"NOTIFY_TESTS_DATABASE_URL=x"})
	require.ErrorContains(t, err, "unknown environment variable NOTIFY_TESTS_DATABASE_URL")
}

// The built-in secret is refused beyond loopback unless a demo asks for it.
func TestCheckExposure(t *testing.T) {
	t.Parallel()
	own := "an-operator-secret-of-at-least-32-bytes"
	cases := []struct {
		addr, secret, previous string
		allow                  bool
		refused                bool
	}{
		{addr: "127.0.0.1:8080", secret: config.DevHMACSecret},
		{addr: "127.0.0.2:8080", secret: config.DevHMACSecret},
		{addr: "[::1]:8080", secret: config.DevHMACSecret},
		{addr: "localhost:8080", secret: config.DevHMACSecret},
		{addr: "0.0.0.0:8080", secret: config.DevHMACSecret, refused: true},
		{addr: ":8080", secret: config.DevHMACSecret, refused: true},
		{addr: "[::]:8080", secret: config.DevHMACSecret, refused: true},
		{addr: "10.1.2.3:8080", secret: config.DevHMACSecret, refused: true},
		{addr: "svc.example.com:8080", secret: config.DevHMACSecret, refused: true},
		{addr: "0.0.0.0:8080", secret: own, previous: config.DevHMACSecret, refused: true},
		{addr: "0.0.0.0:8080", secret: config.DevHMACSecret, allow: true},
		{addr: "0.0.0.0:8080", secret: own},
	}
	for _, tc := range cases {
		c := config.Default()
		c.HTTP.Addr, c.Auth.HMACSecret, c.Auth.PreviousHMACSecret, c.Auth.AllowDevSecret = tc.addr, tc.secret, tc.previous, tc.allow
		err := c.CheckExposure()
		if !tc.refused {
			require.NoError(t, err, "%+v", tc)
			continue
		}
		require.ErrorContains(t, err, "auth.hmacSecret (NOTIFY_AUTH_HMAC_SECRET)", "%+v", tc)
		require.ErrorContains(t, err, "NOTIFY_AUTH_ALLOW_DEV_SECRET=true", "%+v", tc)
	}
	cfg, err := config.Load("", []string{"NOTIFY_HTTP_ADDR=0.0.0.0:8080", "NOTIFY_AUTH_ALLOW_DEV_SECRET=true"})
	require.NoError(t, err)
	require.NoError(t, cfg.CheckExposure())
}

// The built-in webhooks.secretKey is refused beyond loopback unless a demo
// asks for it, and the section's values are checked.
func TestWebhooksConfig(t *testing.T) {
	t.Parallel()
	c := config.Default()
	require.NoError(t, c.CheckWebhookExposure())
	c.HTTP.Addr = "0.0.0.0:8080"
	require.ErrorContains(t, c.CheckWebhookExposure(), "webhooks.secretKey (NOTIFY_WEBHOOKS_SECRET_KEY)")
	c.Webhooks.SecretKey = "an-operator-key-of-at-least-32-bytes!!"
	require.NoError(t, c.CheckWebhookExposure())

	cfg, err := config.Load("", []string{"NOTIFY_WEBHOOKS_ALLOW_PRIVATE_NETWORKS=true"})
	require.NoError(t, err)
	require.True(t, cfg.Webhooks.AllowPrivateNetworks)

	c = config.Default()
	c.Webhooks.SecretKey, c.Webhooks.RetryFor, c.Webhooks.BackoffMax = "short", 0, time.Millisecond
	err = c.Validate()
	require.ErrorContains(t, err, "webhooks.secretKey")
	require.ErrorContains(t, err, "webhooks.retryFor")
	require.ErrorContains(t, err, "webhooks.backoffMax")
}
