package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// healthcheck exits 0 only on a 200 from /healthz (or /readyz with -ready)
// at http.addr, and 1 when the service answers otherwise or not at all.
func TestHealthcheck(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			w.WriteHeader(http.StatusOK)
		case "/readyz":
			http.Error(w, `{"status":"unavailable","checks":{"queue":"down"}}`, http.StatusServiceUnavailable)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Setenv("NOTIFY_HTTP_ADDR", srv.Listener.Addr().String())
	db := filepath.Join(t.TempDir(), "x.db")

	out, err := runCmd(t, db, "healthcheck")
	require.NoError(t, err)
	require.Contains(t, out, "/healthz: 200 OK")

	_, err = runCmd(t, db, "healthcheck", "-ready")
	require.ErrorContains(t, err, "503")
	require.ErrorContains(t, err, `"queue":"down"`)

	srv.Close()
	_, err = runCmd(t, db, "healthcheck")
	require.ErrorContains(t, err, "healthcheck:")
}

// A wildcard listen address (the container's 0.0.0.0:8080) is probed on
// loopback.
func TestProbeURL(t *testing.T) {
	for addr, want := range map[string]string{
		"0.0.0.0:8080":   "http://127.0.0.1:8080/healthz",
		":8080":          "http://127.0.0.1:8080/healthz",
		"[::]:8080":      "http://[::1]:8080/healthz",
		"127.0.0.1:9000": "http://127.0.0.1:9000/healthz",
		"localhost:80":   "http://localhost:80/healthz",
	} {
		got, err := probeURL(addr, "/healthz")
		require.NoError(t, err)
		require.Equal(t, want, got, addr)
	}
}

// serve refuses to listen beyond loopback with the README's secret, naming
// the keys, their variables and the demo override.
func TestServeRefusesTheDevSecretOnAPublicAddress(t *testing.T) {
	t.Setenv("NOTIFY_HTTP_ADDR", "0.0.0.0:0")
	// A database path under a regular file cannot be opened, so a serve that
	// got past the check fails at once instead of serving until killed.
	notDir := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(notDir, nil, 0o600))
	_, err := runCmd(t, filepath.Join(notDir, "x.db"), "serve")
	require.ErrorContains(t, err, "auth.hmacSecret (NOTIFY_AUTH_HMAC_SECRET)")
	require.ErrorContains(t, err, "http.addr (NOTIFY_HTTP_ADDR)")
	require.ErrorContains(t, err, "auth.allowDevSecret (NOTIFY_AUTH_ALLOW_DEV_SECRET=true)")
}
