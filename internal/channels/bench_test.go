package channels_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// The channel benchmarks send through the real SDK clients to a local fake
// and compare with the same fake driven by a bare net/http client (the
// "raw" benchmarks): same handler, same concurrency, same body size. The
// difference is what the SDK, the classification, the limiter and the
// breaker cost per send. docs/benchmarks.md (Channels) has the figures.

const benchParallelism = 8 // goroutines per GOMAXPROCS, for raw and channel alike

// benchServer is a fake provider that answers at once and records nothing.
func benchServer(b *testing.B, respond func(w http.ResponseWriter)) *httptest.Server {
	b.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		respond(w)
	}))
	b.Cleanup(srv.Close)
	return srv
}

func benchClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 64}}
}

// raw posts body to url as fast as the fake answers.
func raw(b *testing.B, url, contentType string, body []byte, header ...string) {
	hc := benchClient()
	b.SetParallelism(benchParallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
			req.Header.Set("Content-Type", contentType)
			for i := 0; i+1 < len(header); i += 2 {
				req.Header.Set(header[i], header[i+1])
			}
			res, err := hc.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			_ = res.Body.Close()
			if res.StatusCode >= 300 {
				b.Fatalf("status %d", res.StatusCode)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "requests/s")
}

// send runs ch.Send with batch messages per call and reports messages/s.
func send(b *testing.B, ch channels.Channel, batch []channels.Message) {
	b.SetParallelism(benchParallelism)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			for _, r := range ch.Send(context.Background(), batch) {
				if r.Err != nil {
					b.Fatal(r.Err)
				}
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "requests/s")
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "sends/s")
}

func sgAccepted(w http.ResponseWriter) {
	w.Header().Set("X-Message-Id", "bench")
	w.WriteHeader(http.StatusAccepted)
}

func benchEmails(n int) []channels.Message {
	out := make([]channels.Message, n)
	for i := range out {
		m := emailMsg(int64(i+1), fmt.Sprintf("user%d@example.test", i))
		m.Subject, m.Text, m.HTML = "Welcome, User", "Welcome!", "<p>Welcome!</p>"
		out[i] = m
	}
	return out
}

func benchSendGrid(url string) *channels.SendGrid {
	c := config.Default().Channels.SendGrid
	c.APIKey, c.BaseURL, c.FromEmail, c.RatePerSecond = "SG.bench", url, "noreply@example.test", 0
	return channels.NewSendGrid(c, 5, time.Minute, nil)
}

func BenchmarkSendGridRaw(b *testing.B) {
	srv := benchServer(b, sgAccepted)
	body := []byte(`{"from":{"email":"noreply@example.test"},"personalizations":[{"to":[{"email":"user0@example.test","name":"User 1"}],"subject":"Welcome, User","custom_args":{"delivery_id":"1","notification_id":"900"}}],"content":[{"type":"text/plain","value":"Welcome!"},{"type":"text/html","value":"<p>Welcome!</p>"}]}`)
	raw(b, srv.URL+"/v3/mail/send", "application/json", body, "Authorization", "Bearer SG.bench")
}

func BenchmarkSendGridSend(b *testing.B) {
	srv := benchServer(b, sgAccepted)
	send(b, benchSendGrid(srv.URL), benchEmails(1))
}

// BenchmarkSendGridSendBatch100 is one action's 100 recipients in one Send:
// one request carries 100 personalizations.
func BenchmarkSendGridSendBatch100(b *testing.B) {
	srv := benchServer(b, sgAccepted)
	send(b, benchSendGrid(srv.URL), benchEmails(100))
}

func twCreated(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write([]byte(`{"sid": "SM00000000000000000000000000000001", "status": "queued"}`))
}

func BenchmarkTwilioRaw(b *testing.B) {
	srv := benchServer(b, twCreated)
	body := []byte(url.Values{"To": {"+14155550100"}, "From": {"+15005550006"}, "Body": {"Hi Ann, your code is 123456"}}.Encode())
	raw(b, srv.URL+"/2010-04-01/Accounts/"+testAccountSID+"/Messages.json", "application/x-www-form-urlencoded", body)
}

func BenchmarkTwilioSend(b *testing.B) {
	srv := benchServer(b, twCreated)
	c := config.Default().Channels.Twilio
	c.AccountSID, c.AuthToken, c.BaseURL, c.From, c.RatePerSecond = testAccountSID, testAuthToken, srv.URL, "+15005550006", 0
	tw, err := channels.NewTwilio(c, 5, time.Minute, nil)
	if err != nil {
		b.Fatal(err)
	}
	send(b, tw, []channels.Message{smsMsg(1, "+14155550100", "Hi Ann, your code is 123456")})
}

func fcmOK(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"name": "projects/notify-test/messages/0:1"}`))
}

func BenchmarkFCMRaw(b *testing.B) {
	srv := benchServer(b, fcmOK)
	body := []byte(`{"message":{"data":{"deeplink":"app://inbox/77","kind":"message"},"notification":{"title":"Ann, you have a message","body":"From Bob"},"android":{"priority":"high"},"apns":{"headers":{"apns-priority":"10","apns-push-type":"alert"},"payload":{"aps":{"sound":"default"}}},"token":"hj7sdf67sqc9"}}`)
	raw(b, srv.URL+"/v1/projects/notify-test/messages:send", "application/json", body, "Authorization", "Bearer fake-access-token")
}

func BenchmarkFCMSend(b *testing.B) {
	srv := benchServer(b, fcmOK)
	send(b, pushWith(b, fcmConfig(srv.URL)), []channels.Message{pushMsg(1, "hj7sdf67sqc9")})
}

// BenchmarkSandboxSend is the default channel's send of one email (the
// drain's group: one delivery per notification and action), in memory and
// recording in PostgreSQL as the default configuration does; its B/op is
// what the sandbox allocates per delivery (issue 17).
func BenchmarkSandboxSend(b *testing.B) {
	for _, withDB := range []bool{false, true} {
		name := "memory"
		if withDB {
			name = "database"
		}
		b.Run(name, func(b *testing.B) {
			sb := channels.NewSandbox(nil, nil, nil)
			if withDB {
				db, _ := testdb.Postgres(b)
				sb = channels.NewSandbox(db, nil, nil)
			}
			msg := channels.Message{Channel: channels.ChannelEmail, From: channels.Address{Email: "noreply@example.com"},
				To: []channels.Address{{Email: "u1@example.com", Name: "U 1"}}, Subject: "Hi U1", HTML: "<b>U1</b>",
				NotificationID: 7, CollectionID: 1, ActionID: 1}
			ctx := context.Background()
			msgs := make([]channels.Message, 1)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				msgs[0] = msg
				msgs[0].DeliveryID = int64(i + 1)
				if res := sb.Send(ctx, msgs); res[0].Err != nil {
					b.Fatal(res[0].Err)
				}
			}
		})
	}
}
