package channels_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/config"
)

const fcmProject = "notify-test"

func fcmConfig(url string) config.FCM {
	c := config.Default().Channels.FCM
	c.BaseURL = url
	c.ProjectID = fcmProject
	c.RatePerSecond = 0
	c.Timeout = 2 * time.Second
	return c
}

func newPush(t *testing.T, f *fake, mutate ...func(*config.FCM)) *channels.Push {
	t.Helper()
	c := fcmConfig(f.URL)
	for _, m := range mutate {
		m(&c)
	}
	return pushWith(t, c)
}

// pushWith builds the push channel with a fake OAuth token source.
func pushWith(tb testing.TB, c config.FCM) *channels.Push {
	tb.Helper()
	ts := oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "fake-access-token", TokenType: "Bearer", Expiry: time.Now().Add(time.Hour)})
	p, err := channels.NewPush(context.Background(), c, ts, 3, time.Minute, nil)
	require.NoError(tb, err)
	return p
}

func fcmSent(w http.ResponseWriter, r *http.Request, body []byte, n int) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = fmt.Fprintf(w, `{"name": "projects/%s/messages/0:%d"}`, fcmProject, n)
}

func fcmError(status int, grpcStatus, fcmCode, message string, header ...string) func(w http.ResponseWriter, r *http.Request, body []byte, n int) {
	return func(w http.ResponseWriter, r *http.Request, body []byte, n int) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		details := "[]"
		if fcmCode != "" {
			details = fmt.Sprintf(`[{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": %q}]`, fcmCode)
		}
		_, _ = fmt.Fprintf(w, `{"error": {"code": %d, "message": %q, "status": %q, "details": %s}}`, status, message, grpcStatus, details)
	}
}

func pushMsg(id int64, token string) channels.Message {
	return channels.Message{DeliveryID: id, NotificationID: 55, Channel: "push", PushToken: token,
		Title: "Ann, you have a message", Body: "From Bob: \"see you at 5\"",
		Data: map[string]string{"deeplink": "app://inbox/77", "kind": "message"}}
}

func TestPushRequest(t *testing.T) {
	t.Parallel()
	f := newFake(t, fcmSent)
	p := newPush(t, f)
	res := p.Send(context.Background(), []channels.Message{pushMsg(1, "hj7sdf67sqc9")})
	require.NoError(t, res[0].Err)
	require.Equal(t, "projects/notify-test/messages/0:1", res[0].ProviderMessageID)
	reqs := f.requests()
	require.Len(t, reqs, 1)
	require.Equal(t, http.MethodPost, reqs[0].Method)
	require.Equal(t, "/v1/projects/notify-test/messages:send", reqs[0].Path)
	require.Equal(t, "Bearer fake-access-token", reqs[0].Header.Get("Authorization"))
	golden(t, "fcm/notification.json", reqs[0].Body)
}

func TestPushDataOnly(t *testing.T) {
	t.Parallel()
	f := newFake(t, fcmSent)
	p := newPush(t, f)
	m := channels.Message{DeliveryID: 2, Channel: "push", PushToken: "tok-2", Data: map[string]string{"sync": "inbox"}}
	res := p.Send(context.Background(), []channels.Message{m})
	require.NoError(t, res[0].Err)
	golden(t, "fcm/data_only.json", f.requests()[0].Body)
}

func TestPushRefusesBeforeSending(t *testing.T) {
	t.Parallel()
	f := newFake(t, fcmSent)
	p := newPush(t, f, func(c *config.FCM) { c.MaxPayloadBytes = 200 })
	big := pushMsg(1, "tok")
	big.Body = strings.Repeat("x", 300)
	noToken := pushMsg(2, " ")
	empty := channels.Message{DeliveryID: 3, PushToken: "tok"}
	res := p.Send(context.Background(), []channels.Message{big, noToken, empty})
	for i, want := range []string{"more than the limit of 200", "no device token", "all empty"} {
		e := channels.Classify("fcm", res[i].Err)
		require.True(t, e.Permanent)
		require.Contains(t, e.Reason, want)
	}
	require.Zero(t, f.count())
}

func TestPushErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		respond    func(w http.ResponseWriter, r *http.Request, body []byte, n int)
		permanent  bool
		retryAfter time.Duration
		reason     string
	}{
		{"unregistered token", fcmError(404, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found."), true, 0, "device token is no longer registered: HTTP 404 UNREGISTERED"},
		{"invalid argument", fcmError(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token"), true, 0, "HTTP 400 INVALID_ARGUMENT"},
		{"sender id mismatch", fcmError(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH", "SenderId mismatch"), true, 0, "SENDER_ID_MISMATCH"},
		{"bad credentials", fcmError(401, "UNAUTHENTICATED", "", "Request had invalid authentication credentials."), true, 0, "authentication or permission: HTTP 401"},
		{"quota exceeded honours Retry-After", fcmError(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "Quota exceeded", "Retry-After", "12"), false, 12 * time.Second, "HTTP 429 QUOTA_EXCEEDED"},
		{"internal", fcmError(500, "INTERNAL", "INTERNAL", "Internal error"), false, 0, "HTTP 500 INTERNAL"},
		// A 503 is reported, not retried inside Send: the workers retry.
		{"an answer without a message name is not resent", func(w http.ResponseWriter, r *http.Request, body []byte, n int) {
			_, _ = w.Write([]byte(`<html>proxy</html>`))
		}, true, 0, "HTTP 200 with an unreadable answer"},
		{"unavailable is sent once", fcmError(503, "UNAVAILABLE", "UNAVAILABLE", "The service is currently unavailable.", "Retry-After", "30"), false, 30 * time.Second, "HTTP 503 UNAVAILABLE: The service is currently unavailable."},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, tc.respond)
			p := newPush(t, f)
			start := time.Now()
			res := p.Send(context.Background(), []channels.Message{pushMsg(1, "tok")})
			require.Less(t, time.Since(start), time.Second, "no retry wait inside Send")
			require.Equal(t, 1, f.count(), "exactly one request per attempt")
			e := channels.Classify("fcm", res[0].Err)
			require.Equal(t, "fcm", e.Provider)
			require.Equal(t, tc.permanent, e.Permanent, e.Reason)
			require.Contains(t, e.Reason, tc.reason)
			require.Equal(t, tc.retryAfter, e.RetryAfter)
		})
	}
}

func TestPushTimeoutAndRefusedAreSentOnce(t *testing.T) {
	t.Parallel()
	var f *fake
	f = newFake(t, func(w http.ResponseWriter, r *http.Request, _ []byte, _ int) { f.hang(r) })
	p := newPush(t, f, func(c *config.FCM) { c.Timeout = 500 * time.Millisecond })
	res := p.Send(context.Background(), []channels.Message{pushMsg(1, "tok")})
	e := channels.Classify("fcm", res[0].Err)
	require.False(t, e.Permanent)
	require.True(t, e.MaybeAccepted, "FCM had the request: in doubt, %v", e)
	require.Contains(t, e.Reason, "timeout")
	// The fake counts the request once its handler has read it, which can
	// come after the client gave up.
	require.Eventually(t, func() bool { return f.count() >= 1 }, 30*time.Second, 5*time.Millisecond)
	require.Equal(t, 1, f.count())

	// A closed port: a network error, reported at once.
	closed := newFake(t, fcmSent)
	closed.Close()
	p = newPush(t, closed)
	start := time.Now()
	res = p.Send(context.Background(), []channels.Message{pushMsg(2, "tok")})
	e = channels.Classify("fcm", res[0].Err)
	require.False(t, e.Permanent)
	require.False(t, e.MaybeAccepted, "nothing reached FCM: %v", e)
	require.Contains(t, e.Reason, "transport")
	require.Less(t, time.Since(start), time.Second, "no retry backoff inside Send")
}

// FCM answers 200 and the connection breaks in its body: FCM took the
// message, whose name is lost. In doubt, not retried (a second push).
func TestPushAnswerBrokenOffAfter200IsInDoubt(t *testing.T) {
	t.Parallel()
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, _ []byte, _ int) {
		conn, buf, err := http.NewResponseController(w).Hijack()
		require.NoError(t, err)
		_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\": \"projects/p/mess")
		_ = buf.Flush()
		_ = conn.Close()
	})
	res := newPush(t, f).Send(context.Background(), []channels.Message{pushMsg(1, "tok")})
	e := channels.Classify("fcm", res[0].Err)
	require.True(t, e.MaybeAccepted, "in doubt: %v", e)
	require.Contains(t, e.Reason, "HTTP 200, then the answer broke off")
	require.Equal(t, 1, f.count())
}

// With a service-account key file (and no token source), NewPush reads the
// project from the key; the token is fetched from the key's token_uri, here
// a local fake.
func TestPushWithCredentialsFile(t *testing.T) {
	t.Parallel()
	tokens := newFake(t, func(w http.ResponseWriter, r *http.Request, body []byte, n int) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token": "from-key", "token_type": "Bearer", "expires_in": 3600}`))
	})
	f := newFake(t, fcmSent)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	sa, err := json.Marshal(map[string]string{
		"type": "service_account", "project_id": "from-key-project", "private_key_id": "k1",
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": "notify@from-key-project.iam.gserviceaccount.com", "token_uri": tokens.URL + "/token",
	})
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "sa.json")
	require.NoError(t, os.WriteFile(path, sa, 0o600))

	c := fcmConfig(f.URL)
	c.ProjectID, c.CredentialsFile = "", path
	p, err := channels.NewPush(context.Background(), c, nil, 3, time.Minute, nil)
	require.NoError(t, err)
	res := p.Send(context.Background(), []channels.Message{pushMsg(1, "tok")})
	require.NoError(t, res[0].Err)
	req := f.requests()[0]
	require.Equal(t, "/v1/projects/from-key-project/messages:send", req.Path)
	require.Equal(t, "Bearer from-key", req.Header.Get("Authorization"))
	require.Equal(t, 1, tokens.count())

	c.CredentialsFile = filepath.Join(t.TempDir(), "missing.json")
	_, err = channels.NewPush(context.Background(), c, nil, 3, time.Minute, nil)
	require.ErrorContains(t, err, "fcm credentials")
}

// A credentials file must be a service-account key: a key of another type
// (here an authorized user's refresh token, which would otherwise be used as
// is) is refused when the channel is built, before any request.
func TestPushRefusesOtherCredentialTypes(t *testing.T) {
	t.Parallel()
	user, err := json.Marshal(map[string]string{
		"type": "authorized_user", "client_id": "id", "client_secret": "secret", "refresh_token": "token",
	})
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "user.json")
	require.NoError(t, os.WriteFile(path, user, 0o600))
	c := fcmConfig("http://127.0.0.1:1")
	c.CredentialsFile = path
	_, err = channels.NewPush(context.Background(), c, nil, 3, time.Minute, nil)
	require.ErrorContains(t, err, "fcm credentials")
}
