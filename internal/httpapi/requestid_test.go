package httpapi_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/httpapi"
)

// The request id comes back on every response: the caller's own when it
// sent a usable one, else a fresh one.
func TestRequestIDIsEchoedOrMade(t *testing.T) {
	t.Parallel()
	api := newAPI(t, "sqlite")
	res := api.do(http.MethodGet, "/healthz", "", nil, httpapi.RequestIDHeader, "req-1")
	require.Equal(t, "req-1", res.Header.Get(httpapi.RequestIDHeader))
	res = api.do(http.MethodGet, "/healthz", "", nil, "x-request-id", "req-2")
	require.Equal(t, "req-2", res.Header.Get(httpapi.RequestIDHeader), "header names are case-insensitive")

	made := regexp.MustCompile(`^[0-9a-f]{16}$`)
	first := api.do(http.MethodGet, "/healthz", "", nil).Header.Get(httpapi.RequestIDHeader)
	require.Regexp(t, made, first)
	second := api.do(http.MethodGet, "/healthz", "", nil).Header.Get(httpapi.RequestIDHeader)
	require.NotEqual(t, first, second)
	res = api.do(http.MethodGet, "/healthz", "", nil, httpapi.RequestIDHeader, strings.Repeat("x", 129))
	require.Regexp(t, made, res.Header.Get(httpapi.RequestIDHeader), "an oversized id is replaced")
	require.Len(t, res.Header.Values(httpapi.RequestIDHeader), 1)
}
