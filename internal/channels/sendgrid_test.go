package channels_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/config"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// golden compares got (JSON) with testdata/name, indented.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, json.Indent(&buf, got, "", "  "))
	buf.WriteByte('\n')
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./internal/channels -update")
	require.Equal(t, string(want), buf.String())
}

func sendGridConfig(url string) config.SendGrid {
	c := config.Default().Channels.SendGrid
	c.APIKey = "SG.test-key"
	c.BaseURL = url
	c.FromEmail = "noreply@example.test"
	c.FromName = "Example"
	c.RatePerSecond = 0
	c.Timeout = 2 * time.Second
	return c
}

func newSendGrid(t *testing.T, f *fake, mutate ...func(*config.SendGrid)) *channels.SendGrid {
	t.Helper()
	c := sendGridConfig(f.URL)
	for _, m := range mutate {
		m(&c)
	}
	return channels.NewSendGrid(c, 3, time.Minute, nil)
}

// accepted is SendGrid's answer to a good mail/send: 202, no body, the
// message id in a header.
func accepted(id string) func(w http.ResponseWriter, r *http.Request, body []byte, n int) {
	return func(w http.ResponseWriter, r *http.Request, body []byte, n int) {
		w.Header().Set("X-Message-Id", fmt.Sprintf("%s-%d", id, n))
		w.WriteHeader(http.StatusAccepted)
	}
}

func emailMsg(id int64, to string) channels.Message {
	return channels.Message{
		DeliveryID: id, NotificationID: 900, CollectionID: 1, ActionID: 5, Channel: "email",
		To: []channels.Address{{Email: to, Name: "User " + strconv.FormatInt(id, 10)}},
	}
}

func TestSendGridInlineBatch(t *testing.T) {
	t.Parallel()
	f := newFake(t, accepted("msg"))
	sg := newSendGrid(t, f)
	var msgs []channels.Message
	for i := range 3 {
		m := emailMsg(int64(101+i), fmt.Sprintf("user%d@example.test", i))
		m.Subject = fmt.Sprintf("Welcome, User %d", i)
		m.HTML = "<p>Welcome!</p>"
		m.Text = "Welcome!"
		msgs = append(msgs, m)
	}
	msgs[1].Cc = []channels.Address{{Email: "cc@example.test"}, {Email: "USER1@example.test"}} // a duplicate of the to
	msgs[2].Bcc = []channels.Address{{Email: "audit@example.test", Name: "Audit"}}

	res := sg.Send(context.Background(), msgs)
	for _, r := range res {
		require.NoError(t, r.Err)
		require.Equal(t, "msg-1", r.ProviderMessageID, "one request: one message id for the batch")
	}
	reqs := f.requests()
	require.Len(t, reqs, 1, "recipients of one action with the same content share a request")
	require.Equal(t, http.MethodPost, reqs[0].Method)
	require.Equal(t, "/v3/mail/send", reqs[0].Path)
	require.Equal(t, "Bearer SG.test-key", reqs[0].Header.Get("Authorization"))
	require.Equal(t, "application/json", reqs[0].Header.Get("Content-Type"))
	golden(t, "sendgrid/inline_batch.json", reqs[0].Body)
}

func TestSendGridDynamicTemplate(t *testing.T) {
	t.Parallel()
	f := newFake(t, accepted("tpl"))
	sg := newSendGrid(t, f)
	a := emailMsg(201, "ann@example.test")
	b := emailMsg(202, "bob@example.test")
	for i, m := range []*channels.Message{&a, &b} {
		m.From = channels.Address{Email: "billing@example.test", Name: "Billing"} // the action's sender
		m.TemplateID = "d-1257a7b8169f4d84aa3393cb4437cbcf"
		m.DynamicData = map[string]string{"FNAME": []string{"Ann", "Bob"}[i], "LINK": "https://x.test/r?a=1&b=2"}
	}
	res := sg.Send(context.Background(), []channels.Message{a, b})
	require.NoError(t, res[0].Err)
	require.NoError(t, res[1].Err)
	reqs := f.requests()
	require.Len(t, reqs, 1)
	golden(t, "sendgrid/dynamic_template.json", reqs[0].Body)
}

func TestSendGridSplitsBatches(t *testing.T) {
	t.Parallel()
	f := newFake(t, accepted("split"))
	sg := newSendGrid(t, f)
	var msgs []channels.Message
	// 1,001 recipients with the same content: SendGrid takes 1,000 per request.
	for i := range 1001 {
		m := emailMsg(int64(i+1), fmt.Sprintf("u%d@example.test", i))
		m.Subject, m.Text = "Hi", "Hello"
		msgs = append(msgs, m)
	}
	// Different rendered content cannot share the mail-level body.
	other := emailMsg(5000, "x@example.test")
	other.Subject, other.Text = "Hi", "Bonjour"
	msgs = append(msgs, other)

	res := sg.Send(context.Background(), msgs)
	for _, r := range res {
		require.NoError(t, r.Err)
	}
	reqs := f.requests()
	require.Len(t, reqs, 3)
	var counts []int
	for _, r := range reqs {
		var body struct {
			Personalizations []json.RawMessage `json:"personalizations"`
		}
		require.NoError(t, json.Unmarshal(r.Body, &body))
		counts = append(counts, len(body.Personalizations))
	}
	require.Equal(t, []int{1000, 1, 1}, counts)
	require.Equal(t, "split-1", res[0].ProviderMessageID)
	require.Equal(t, "split-2", res[1000].ProviderMessageID)
}

func TestSendGridInvalidMessagesFailAlone(t *testing.T) {
	t.Parallel()
	f := newFake(t, accepted("ok"))
	sg := newSendGrid(t, f, func(c *config.SendGrid) { c.FromEmail = "" })
	good := emailMsg(1, "good@example.test")
	good.From = channels.Address{Email: "sender@example.test"}
	good.Subject, good.Text = "s", "t"
	badAddr := good
	badAddr.DeliveryID, badAddr.To = 2, []channels.Address{{Email: "not-an-address"}}
	noFrom := good
	noFrom.DeliveryID, noFrom.From = 3, channels.Address{}
	noContent := good
	noContent.DeliveryID, noContent.Text = 4, ""

	res := sg.Send(context.Background(), []channels.Message{good, badAddr, noFrom, noContent})
	require.NoError(t, res[0].Err)
	for i, want := range map[int]string{1: "invalid recipient address", 2: "no sender", 3: "no content"} {
		e := channels.Classify("sendgrid", res[i].Err)
		require.True(t, e.Permanent, "message %d", i)
		require.Contains(t, e.Reason, want)
	}
	require.Equal(t, 1, f.count(), "only the good message reached SendGrid")
}

func TestSendGridErrors(t *testing.T) {
	t.Parallel()
	type want struct {
		permanent  bool
		retryAfter time.Duration
		reason     string
	}
	cases := []struct {
		name    string
		respond func(w http.ResponseWriter, r *http.Request)
		want    want
	}{
		{"429 with Retry-After", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write([]byte(`{"errors":[{"message":"too many requests","field":null}]}`))
		}, want{retryAfter: 7 * time.Second, reason: "HTTP 429: too many requests"}},
		{"500", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusInternalServerError)
		}, want{reason: "HTTP 500"}},
		{"503 with an HTTP-date Retry-After", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", time.Now().Add(90*time.Second).UTC().Format(http.TimeFormat))
			w.WriteHeader(http.StatusServiceUnavailable)
		}, want{retryAfter: 89 * time.Second, reason: "HTTP 503"}},
		{"401 bad key", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"errors":[{"field":null,"message":"The provided authorization grant is invalid, expired, or revoked"}]}`))
		}, want{permanent: true, reason: "authentication or permission: HTTP 401: The provided authorization grant is invalid"}},
		{"400 unknown template", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"errors":[{"message":"The template_id must be a valid GUID, you provided 'd-nope'.","field":"template_id"}]}`))
		}, want{permanent: true, reason: "HTTP 400: template_id: The template_id must be a valid GUID"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, func(w http.ResponseWriter, r *http.Request, _ []byte, _ int) { tc.respond(w, r) })
			sg := newSendGrid(t, f)
			a, b := emailMsg(1, "a@example.test"), emailMsg(2, "b@example.test")
			for _, m := range []*channels.Message{&a, &b} {
				m.TemplateID = "d-nope"
			}
			res := sg.Send(context.Background(), []channels.Message{a, b})
			require.Equal(t, 1, f.count())
			for _, r := range res {
				require.Empty(t, r.ProviderMessageID)
				e := channels.Classify("sendgrid", r.Err)
				require.Equal(t, "sendgrid", e.Provider)
				require.Equal(t, tc.want.permanent, e.Permanent, e.Reason)
				require.Contains(t, e.Reason, tc.want.reason)
				if tc.want.retryAfter > 0 {
					require.InDelta(t, tc.want.retryAfter.Seconds(), e.RetryAfter.Seconds(), 1.5)
				} else {
					require.Zero(t, e.RetryAfter)
				}
			}
		})
	}
}

// A 400 that names personalizations fails those messages only; nothing was
// sent, so the others are retryable at once.
func TestSendGridRejectedPersonalization(t *testing.T) {
	t.Parallel()
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, _ []byte, _ int) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"errors":[{"message":"Does not contain a valid address.","field":"personalizations.1.to.0.email"}]}`))
	})
	sg := newSendGrid(t, f)
	var msgs []channels.Message
	for i := range 3 {
		m := emailMsg(int64(i+1), fmt.Sprintf("u%d@example.test", i))
		m.Subject, m.Text = "s", "t"
		msgs = append(msgs, m)
	}
	res := sg.Send(context.Background(), msgs)
	bad := channels.Classify("sendgrid", res[1].Err)
	require.True(t, bad.Permanent)
	require.Contains(t, bad.Reason, "Does not contain a valid address")
	for _, i := range []int{0, 2} {
		e := channels.Classify("sendgrid", res[i].Err)
		require.False(t, e.Permanent)
		require.Contains(t, e.Reason, "another recipient")
	}
}

func TestSendGridTimeout(t *testing.T) {
	t.Parallel()
	var f *fake
	f = newFake(t, func(w http.ResponseWriter, r *http.Request, _ []byte, _ int) { f.hang(r) })
	sg := newSendGrid(t, f, func(c *config.SendGrid) { c.Timeout = 150 * time.Millisecond })
	m := emailMsg(1, "a@example.test")
	m.Subject, m.Text = "s", "t"
	start := time.Now()
	res := sg.Send(context.Background(), []channels.Message{m})
	e := channels.Classify("sendgrid", res[0].Err)
	require.False(t, e.Permanent)
	require.Contains(t, e.Reason, "timeout")
	require.Less(t, time.Since(start), 2*time.Second)
}

// After three retryable failures the circuit opens: the next Send fails at
// once, without a request, and says when to come back.
func TestSendGridCircuitBreaker(t *testing.T) {
	t.Parallel()
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, _ []byte, _ int) {
		w.WriteHeader(http.StatusBadGateway)
	})
	sg := newSendGrid(t, f)
	m := emailMsg(1, "a@example.test")
	m.Subject, m.Text = "s", "t"
	for range 3 {
		res := sg.Send(context.Background(), []channels.Message{m})
		require.Contains(t, channels.Classify("sendgrid", res[0].Err).Reason, "HTTP 502")
	}
	require.Equal(t, "open", sg.Breaker().State())
	res := sg.Send(context.Background(), []channels.Message{m})
	e := channels.Classify("sendgrid", res[0].Err)
	require.False(t, e.Permanent)
	require.Contains(t, e.Reason, "circuit open")
	require.Greater(t, e.RetryAfter, 50*time.Second)
	require.Equal(t, 3, f.count(), "an open circuit does not call the provider")
}
