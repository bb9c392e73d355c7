package webhookout_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/channels/webhookout"
)

func message(t *testing.T, url string) (webhookout.Message, string) {
	t.Helper()
	secret, err := webhookout.NewSecret()
	require.NoError(t, err)
	return webhookout.Message{URL: url, ID: "evt_1", Timestamp: time.Now(), Body: []byte(`{"id":"evt_1"}`), Secrets: []string{secret}}, secret
}

// The guard checks the address dialled: a name that resolves to loopback
// is refused at connect time, and the server never sees the request.
func TestDialGuardRefusesLoopback(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { hits.Add(1) }))
	defer srv.Close()
	byName := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)

	guarded := webhookout.New(webhookout.Config{Timeout: 5 * time.Second})
	for _, u := range []string{srv.URL, byName} {
		m, _ := message(t, u)
		res := guarded.Send(context.Background(), m)
		require.ErrorIs(t, res.Err, webhookout.ErrBlockedAddress, u)
		require.False(t, res.OK())
	}
	require.Zero(t, hits.Load())

	open := webhookout.New(webhookout.Config{Timeout: 5 * time.Second, AllowPrivateNetworks: true})
	m, _ := message(t, srv.URL)
	require.True(t, open.Send(context.Background(), m).OK())
	require.EqualValues(t, 1, hits.Load())
}

// Redirects are not followed; the answer body is read up to the cap;
// Retry-After is reported; the signature verifies with the library.
func TestSendSignsAndDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	var got http.Header
	var redirected atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/target", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/target", func(http.ResponseWriter, *http.Request) { redirected.Add(1) })
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		w.Header().Set("Retry-After", "120")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(strings.Repeat("x", 10*webhookout.MaxResponseBytes)))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := webhookout.New(webhookout.Config{Timeout: 5 * time.Second, AllowPrivateNetworks: true})

	m, _ := message(t, srv.URL+"/redirect")
	res := c.Send(context.Background(), m)
	require.Equal(t, http.StatusTemporaryRedirect, res.StatusCode)
	require.False(t, res.OK())
	require.Zero(t, redirected.Load())

	m, secret := message(t, srv.URL+"/big")
	res = c.Send(context.Background(), m)
	require.Equal(t, http.StatusServiceUnavailable, res.StatusCode)
	require.Len(t, res.Body, webhookout.MaxResponseBytes)
	require.Equal(t, 120*time.Second, res.RetryAfter)
	wh, err := standardwebhooks.NewWebhook(secret)
	require.NoError(t, err)
	require.NoError(t, wh.Verify(m.Body, got))
}

func TestBlockedRanges(t *testing.T) {
	t.Parallel()
	for _, a := range []string{"127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "::1", "fe80::1", "fd00:ec2::254", "::ffff:127.0.0.1"} {
		require.True(t, webhookout.Blocked(netip.MustParseAddr(a)), a)
	}
	for _, a := range []string{"93.184.216.34", "2606:2800:220:1::1"} {
		require.False(t, webhookout.Blocked(netip.MustParseAddr(a)), a)
	}
}

func TestCheckURL(t *testing.T) {
	t.Parallel()
	require.NoError(t, webhookout.CheckURL("https://hooks.example.com/x", false))
	require.Error(t, webhookout.CheckURL("http://hooks.example.com/x", false))
	require.Error(t, webhookout.CheckURL("http://hooks.example.com/x", true))
	require.Error(t, webhookout.CheckURL("https://127.0.0.1/x", false))
	require.NoError(t, webhookout.CheckURL("http://127.0.0.1:8081/x", true))
	require.Error(t, webhookout.CheckURL("https://user:pw@hooks.example.com/x", false))
	require.Error(t, webhookout.CheckURL("ftp://hooks.example.com/x", false))
}
