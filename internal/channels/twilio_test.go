package channels_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/config"
)

const (
	testAccountSID = "AC0123456789abcdef0123456789abcdef"
	testAuthToken  = "0123456789abcdef0123456789abcdef"
)

func twilioConfig(url string) config.Twilio {
	c := config.Default().Channels.Twilio
	c.AccountSID, c.AuthToken = testAccountSID, testAuthToken
	c.BaseURL = url
	c.From = "+15005550006"
	c.RatePerSecond = 0
	c.Timeout = 2 * time.Second
	return c
}

func newTwilio(t *testing.T, f *fake, mutate ...func(*config.Twilio)) *channels.Twilio {
	t.Helper()
	c := twilioConfig(f.URL)
	for _, m := range mutate {
		m(&c)
	}
	tw, err := channels.NewTwilio(c, 3, time.Minute, nil)
	require.NoError(t, err)
	return tw
}

// twilioCreated answers like the Messages API: 201 and the message resource.
func twilioCreated(w http.ResponseWriter, r *http.Request, body []byte, n int) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_, _ = fmt.Fprintf(w, `{"sid": "SM%032d", "status": "queued", "account_sid": %q}`, n, testAccountSID)
}

func twilioError(status, code int, message string, header ...string) func(w http.ResponseWriter, r *http.Request, body []byte, n int) {
	return func(w http.ResponseWriter, r *http.Request, body []byte, n int) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = fmt.Fprintf(w, `{"code": %d, "message": %q, "more_info": "https://www.twilio.com/docs/errors/%d", "status": %d}`, code, message, code, status)
	}
}

func smsMsg(id int64, phone, body string) channels.Message {
	return channels.Message{DeliveryID: id, NotificationID: 77, Channel: "sms", Phone: phone, Body: body}
}

func form(t *testing.T, r received) url.Values {
	t.Helper()
	v, err := url.ParseQuery(string(r.Body))
	require.NoError(t, err)
	return v
}

func TestTwilioRequest(t *testing.T) {
	t.Parallel()
	f := newFake(t, twilioCreated)
	tw := newTwilio(t, f, func(c *config.Twilio) {
		c.StatusCallbackURL = "https://notify.example.com/v1/webhooks/twilio/status"
		c.DefaultCountryCode = "1"
	})
	res := tw.Send(context.Background(), []channels.Message{
		smsMsg(11, "+447700900123", "Hi Ann, your code is 123456 & it expires soon"),
		smsMsg(12, "409-685-4167", "Привет 🎉"), // the seed's national format, with defaultCountryCode 1
	})
	require.NoError(t, res[0].Err)
	require.NoError(t, res[1].Err)
	require.Regexp(t, `^SM0{31}[12]$`, res[0].ProviderMessageID)
	require.NotEqual(t, res[0].ProviderMessageID, res[1].ProviderMessageID)

	reqs := f.requests()
	require.Len(t, reqs, 2)
	sort.Slice(reqs, func(i, j int) bool { return form(t, reqs[i]).Get("To") < form(t, reqs[j]).Get("To") })
	for _, r := range reqs {
		require.Equal(t, http.MethodPost, r.Method)
		require.Equal(t, "/2010-04-01/Accounts/"+testAccountSID+"/Messages.json", r.Path)
		user, pass, ok := (&http.Request{Header: r.Header}).BasicAuth()
		require.True(t, ok)
		require.Equal(t, testAccountSID, user)
		require.Equal(t, testAuthToken, pass)
		require.Equal(t, "application/x-www-form-urlencoded", r.Header.Get("Content-Type"))
	}
	require.Equal(t, url.Values{
		"To":             {"+14096854167"},
		"From":           {"+15005550006"},
		"Body":           {"Привет 🎉"},
		"StatusCallback": {"https://notify.example.com/v1/webhooks/twilio/status?deliveryId=12"},
	}, form(t, reqs[0]))
	require.Equal(t, url.Values{
		"To":             {"+447700900123"},
		"From":           {"+15005550006"},
		"Body":           {"Hi Ann, your code is 123456 & it expires soon"},
		"StatusCallback": {"https://notify.example.com/v1/webhooks/twilio/status?deliveryId=11"},
	}, form(t, reqs[1]))
}

func TestTwilioMessagingService(t *testing.T) {
	t.Parallel()
	f := newFake(t, twilioCreated)
	tw := newTwilio(t, f)
	m := smsMsg(1, "+14155550100", "hello")
	m.MessagingServiceSID = "MG0123456789abcdef0123456789abcdef" // the action's sender wins over the configured From
	res := tw.Send(context.Background(), []channels.Message{m})
	require.NoError(t, res[0].Err)
	require.Equal(t, url.Values{
		"To": {"+14155550100"}, "MessagingServiceSid": {"MG0123456789abcdef0123456789abcdef"}, "Body": {"hello"},
	}, form(t, f.requests()[0]))
}

// Messages that cannot succeed fail permanently before any request.
func TestTwilioRefusesBeforeSending(t *testing.T) {
	t.Parallel()
	f := newFake(t, twilioCreated)
	tw := newTwilio(t, f, func(c *config.Twilio) { c.MaxSegments = 2 })
	res := tw.Send(context.Background(), []channels.Message{
		smsMsg(1, "409-685-4167", "no country code configured"),
		smsMsg(2, "+1 (555) 0100-99999999999", "too long a number"),
		smsMsg(3, "+14155550100", strings.Repeat("ж", 135)), // 3 UCS-2 segments
		smsMsg(4, "+14155550100", ""),
	})
	for i, want := range []string{"defaultCountryCode is not set", "not an E.164 number", "3 UCS-2 segments, more than the limit of 2", "body is empty"} {
		e := channels.Classify("twilio", res[i].Err)
		require.True(t, e.Permanent, "message %d", i)
		require.Contains(t, e.Reason, want)
	}
	require.Zero(t, f.count())
}

func TestTwilioErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		respond    func(w http.ResponseWriter, r *http.Request, body []byte, n int)
		permanent  bool
		retryAfter time.Duration
		reason     string
	}{
		{"429 honours Retry-After", twilioError(429, 20429, "Too Many Requests", "Retry-After", "3"), false, 3 * time.Second, "HTTP 429 code 20429: Too Many Requests"},
		{"500", twilioError(500, 20500, "Internal Server Error"), false, 0, "HTTP 500 code 20500"},
		{"503 without a JSON body", func(w http.ResponseWriter, r *http.Request, body []byte, n int) {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("<html>busy</html>"))
		}, false, 0, "HTTP 503"},
		{"invalid To", twilioError(400, 21211, "The 'To' number +15551234 is not a valid phone number."), true, 0, "HTTP 400 code 21211: The 'To' number"},
		{"unsubscribed recipient", twilioError(400, 21610, "Attempt to send to unsubscribed recipient"), true, 0, "code 21610"},
		{"bad credentials", twilioError(401, 20003, "Authenticate"), true, 0, "authentication or permission: HTTP 401 code 20003"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, tc.respond)
			tw := newTwilio(t, f)
			res := tw.Send(context.Background(), []channels.Message{smsMsg(1, "+14155550100", "hi")})
			require.Equal(t, 1, f.count(), "the channel never retries on its own")
			e := channels.Classify("twilio", res[0].Err)
			require.Equal(t, "twilio", e.Provider)
			require.Equal(t, tc.permanent, e.Permanent, e.Reason)
			require.Contains(t, e.Reason, tc.reason)
			require.Equal(t, tc.retryAfter, e.RetryAfter)
			if tc.name == "unsubscribed recipient" {
				require.Equal(t, channels.SuppressTwilioStop, e.Suppress, "STOP suppresses the number")
			} else {
				require.Empty(t, e.Suppress)
			}
		})
	}
}

func TestTwilioTimeoutAndCancel(t *testing.T) {
	t.Parallel()
	var f *fake
	f = newFake(t, func(w http.ResponseWriter, r *http.Request, _ []byte, _ int) { f.hang(r) })
	tw := newTwilio(t, f, func(c *config.Twilio) { c.Timeout = 150 * time.Millisecond })
	res := tw.Send(context.Background(), []channels.Message{smsMsg(1, "+14155550100", "hi")})
	e := channels.Classify("twilio", res[0].Err)
	require.False(t, e.Permanent)
	require.Contains(t, e.Reason, "timeout")

	// The caller's context reaches the request, though twilio-go takes none.
	tw = newTwilio(t, f, func(c *config.Twilio) { c.Timeout = time.Minute })
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		require.Eventually(t, func() bool { return f.count() == 2 }, 5*time.Second, 5*time.Millisecond)
		cancel()
	}()
	start := time.Now()
	res = tw.Send(ctx, []channels.Message{smsMsg(2, "+14155550100", "hi")})
	require.False(t, channels.Classify("twilio", res[0].Err).Permanent)
	require.Less(t, time.Since(start), 10*time.Second)
}

// A rate-limit wait that would outlast the attempt's deadline is not
// waited: the message comes back retryable with the wait as Retry-After.
func TestTwilioRateLimitDeadline(t *testing.T) {
	t.Parallel()
	f := newFake(t, twilioCreated)
	tw := newTwilio(t, f, func(c *config.Twilio) { c.RatePerSecond, c.Burst, c.Concurrency = 1, 1, 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	res := tw.Send(ctx, []channels.Message{smsMsg(1, "+14155550100", "a"), smsMsg(2, "+14155550100", "b")})
	require.NoError(t, res[0].Err)
	e := channels.Classify("twilio", res[1].Err)
	require.False(t, e.Permanent)
	require.Contains(t, e.Reason, "rate limit")
	require.InDelta(t, time.Second.Seconds(), e.RetryAfter.Seconds(), 0.2)
	require.Equal(t, 1, f.count())
}

func TestNormalizePhone(t *testing.T) {
	t.Parallel()
	for in, want := range map[[2]string]string{
		{"+14155550100", ""}:      "+14155550100",
		{"+1 (415) 555-0100", ""}: "+14155550100",
		{"0044 7700 900123", ""}:  "+447700900123",
		{"409-685-4167", "1"}:     "+14096854167",
		{"07700 900123", "44"}:    "+447700900123",
		{"409.685.4167", "+1"}:    "+14096854167",
		{"409-685-4167", ""}:      "",
		{"+0123", ""}:             "",
		{"", "1"}:                 "",
		{"+1415555010012345", ""}: "",
		{"+1-415-555-0100x2", ""}: "",
		{"tel:+14155550100", "1"}: "",
	} {
		got, err := channels.NormalizePhone(in[0], strings.TrimPrefix(in[1], "+"))
		if want == "" {
			require.Error(t, err, "%q", in)
			continue
		}
		require.NoError(t, err, "%q", in)
		require.Equal(t, want, got, "%q", in)
	}
}
