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
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/channels/channeltest"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// TestConformance runs the channel conformance suite (channeltest) on every
// provider, each against its fake through its real SDK client. A new
// provider joins with one row here.
func TestConformance(t *testing.T) {
	t.Parallel()
	for _, row := range []channeltest.Row{
		sandboxRow(false), sandboxRow(true), sendGridRow(), twilioRow(), fcmRow(), webhookRow(),
	} {
		t.Run(row.Name, func(t *testing.T) {
			t.Parallel()
			channeltest.Run(t, row)
		})
	}
}

// Credentials the rows configure; none may show in an error or a log.
const (
	conformanceSendGridKey = "SG.conformance-sendgrid-api-key"
	conformanceTwilioToken = "ConformanceTwilioAuthToken4242" // twilio-go takes letters and digits only
	conformanceFCMToken    = "ya29.conformance-fcm-access-token"
)

// conformanceFake is a provider fake answering as o.Answer says: accept
// writes the provider's success (or lookup) answer and returns the message
// id it gave, if any; reject writes the provider's error answer for status
// with reason in its own words.
type conformanceFake struct {
	*fake
	mu  sync.Mutex
	ids []string
}

func newConformanceFake(t *testing.T, o channeltest.Options,
	accept func(w http.ResponseWriter, r *http.Request, body []byte, n int) string,
	reject func(status int, reason string) func(w http.ResponseWriter, r *http.Request, body []byte, n int),
) *conformanceFake {
	t.Helper()
	cf := &conformanceFake{}
	cf.fake = newFake(t, func(w http.ResponseWriter, r *http.Request, body []byte, n int) {
		a := channeltest.Answer{Kind: channeltest.Accept}
		if o.Answer != nil {
			a = o.Answer(n)
		}
		status := map[channeltest.AnswerKind]int{
			channeltest.RateLimited: http.StatusTooManyRequests, channeltest.ServerError: http.StatusInternalServerError,
			channeltest.Unavailable: http.StatusServiceUnavailable, channeltest.Reject: http.StatusBadRequest,
		}[a.Kind]
		switch a.Kind {
		case channeltest.Accept:
			if id := accept(w, r, body, n); id != "" {
				cf.mu.Lock()
				cf.ids = append(cf.ids, id)
				cf.mu.Unlock()
			}
		case channeltest.Hang:
			cf.hang(r)
		case channeltest.Drop:
			conn, _, err := http.NewResponseController(w).Hijack()
			require.NoError(t, err)
			_ = conn.Close()
		default:
			if a.RetryAfter > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(int(a.RetryAfter/time.Second)))
			}
			reject(status, a.Reason)(w, r, body, n)
		}
	})
	return cf
}

func (cf *conformanceFake) given() []string {
	cf.mu.Lock()
	defer cf.mu.Unlock()
	return append([]string(nil), cf.ids...)
}

// conformanceEmail is an email the sandbox and SendGrid accept, with a
// recipient and a body of its own, so SendGrid sends it in a request alone.
func conformanceEmail(i int) channels.Message {
	m := emailMsg(int64(i), fmt.Sprintf("user%d@example.test", i))
	m.Subject, m.Text = fmt.Sprintf("subject %d", i), fmt.Sprintf("body %d", i)
	return m
}

func sandboxRow(withDB bool) channeltest.Row {
	name := "sandbox (memory)"
	if withDB {
		name = "sandbox (database)"
	}
	return channeltest.Row{
		Name: name, Provider: channels.SandboxName,
		Features: channeltest.Features{Reconcile: true, InDoubt: true, Lacks: map[channeltest.Feature]string{
			channeltest.Remote:  "the sandbox calls no provider: no 429, 5xx, refusal or hang to meet",
			channeltest.Pacing:  "the sandbox sends nothing, so it has nothing to pace",
			channeltest.Secrets: "the sandbox holds no credentials",
		}},
		Setup: func(t *testing.T, o channeltest.Options) channeltest.Fixture {
			if !withDB {
				sb := channels.NewSandbox(nil, o.Log, nil)
				return channeltest.Fixture{Channel: sb, Calls: func() int { return len(sb.Messages()) }}
			}
			db, _ := testdb.Postgres(t)
			sb := channels.NewSandbox(db, o.Log, nil)
			return channeltest.Fixture{Channel: sb, Calls: func() int {
				var n int64
				require.NoError(t, db.Raw("SELECT COUNT(*) FROM sandbox_messages").Scan(&n).Error)
				return int(n)
			}}
		},
		Message: conformanceEmail,
		Invalid: func(i int) channels.Message { return emailMsg(int64(i), "not-an-address") },
	}
}

func sendGridRow() channeltest.Row {
	return channeltest.Row{
		Name: "sendgrid", Provider: channels.SendGridName,
		Features: channeltest.Features{Remote: true, Pacing: true, Reconcile: true, Secrets: true, InDoubt: true},
		Setup: func(t *testing.T, o channeltest.Options) channeltest.Fixture {
			var mu sync.Mutex
			sent := map[int64]string{} // delivery id → X-Message-Id, for the Email Activity API
			f := newConformanceFake(t, o, func(w http.ResponseWriter, r *http.Request, body []byte, n int) string {
				if r.Method == http.MethodGet {
					mu.Lock()
					found := map[int64]string{}
					for id, msgID := range sent {
						found[id] = msgID + ".filter0001.16648.5515E0B88.0"
					}
					mu.Unlock()
					sgActivity(found)(w, r, body, n)
					return ""
				}
				var req struct {
					Personalizations []struct {
						CustomArgs map[string]string `json:"custom_args"`
					} `json:"personalizations"`
				}
				require.NoError(t, json.Unmarshal(body, &req))
				id := fmt.Sprintf("conformance-%d", n)
				mu.Lock()
				for _, p := range req.Personalizations {
					d, err := strconv.ParseInt(p.CustomArgs[channels.ArgDeliveryID], 10, 64)
					require.NoError(t, err)
					sent[d] = id
				}
				mu.Unlock()
				w.Header().Set("X-Message-Id", id)
				w.WriteHeader(http.StatusAccepted)
				return id
			}, func(status int, reason string) func(w http.ResponseWriter, r *http.Request, body []byte, n int) {
				return func(w http.ResponseWriter, r *http.Request, body []byte, n int) {
					field := "null"
					if status == http.StatusBadRequest {
						field = `"personalizations.0.to.0.email"`
					}
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(status)
					_, _ = fmt.Fprintf(w, `{"errors":[{"message":%q,"field":%s}]}`, reason, field)
				}
			})
			c := sendGridConfig(f.URL)
			c.APIKey = conformanceSendGridKey
			c.RatePerSecond, c.Burst, c.Timeout, c.Reconcile = o.RatePerSecond, o.Burst, o.Timeout, true
			sg := channels.NewSendGrid(c, 3, time.Minute, o.Log)
			return channeltest.Fixture{Channel: sg, Calls: f.count, IDs: f.given, SetClock: sg.SetClock,
				Secrets: []string{conformanceSendGridKey}, Close: f.Close}
		},
		Message: conformanceEmail,
		Invalid: func(i int) channels.Message {
			m := emailMsg(int64(i), "not-an-address")
			m.Subject, m.Text = "s", "t"
			return m
		},
	}
}

func twilioRow() channeltest.Row {
	return channeltest.Row{
		Name: "twilio", Provider: channels.TwilioName,
		Features: channeltest.Features{Remote: true, Pacing: true, Reconcile: true, Secrets: true, InDoubt: true},
		Setup: func(t *testing.T, o channeltest.Options) channeltest.Fixture {
			var mu sync.Mutex
			var sent []twilioMessage // for the Messages list
			f := newConformanceFake(t, o, func(w http.ResponseWriter, r *http.Request, body []byte, n int) string {
				if r.Method == http.MethodGet {
					mu.Lock()
					list := append([]twilioMessage(nil), sent...)
					mu.Unlock()
					twilioList(list...)(w, r, body, n)
					return ""
				}
				form, err := url.ParseQuery(string(body))
				require.NoError(t, err)
				now := time.Now().Format(time.RFC1123Z)
				m := twilioMessage{Sid: fmt.Sprintf("SM%032d", n), To: form.Get("To"), From: form.Get("From"),
					MessagingServiceSid: form.Get("MessagingServiceSid"), Body: form.Get("Body"), Status: "queued", DateCreated: now, DateSent: now}
				mu.Lock()
				sent = append(sent, m)
				mu.Unlock()
				twilioCreated(w, r, body, n)
				return m.Sid
			}, func(status int, reason string) func(w http.ResponseWriter, r *http.Request, body []byte, n int) {
				code := map[int]int{429: 20429, 500: 20500, 503: 20503, 400: 21211}[status]
				return twilioError(status, code, reason)
			})
			c := twilioConfig(f.URL)
			c.AuthToken = conformanceTwilioToken
			c.RatePerSecond, c.Burst, c.Timeout = o.RatePerSecond, o.Burst, o.Timeout
			tw, err := channels.NewTwilio(c, 3, time.Minute, o.Log)
			require.NoError(t, err)
			return channeltest.Fixture{Channel: tw, Calls: f.count, IDs: f.given, SetClock: tw.SetClock,
				Secrets: []string{conformanceTwilioToken}, Close: f.Close}
		},
		Message: func(i int) channels.Message {
			return smsMsg(int64(i), fmt.Sprintf("+1415555%04d", i), fmt.Sprintf("message %d", i))
		},
		Invalid: func(i int) channels.Message { return smsMsg(int64(i), "12", "hi") },
	}
}

// fcmKey is the service-account key of the FCM row, made once: RSA key
// generation is slow.
var fcmKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

func fcmRow() channeltest.Row {
	return channeltest.Row{
		Name: "fcm", Provider: channels.FCMName,
		Features: channeltest.Features{Remote: true, Pacing: true, Secrets: true, InDoubt: true, Lacks: map[channeltest.Feature]string{
			channeltest.Reconcile: "FCM HTTP v1 has no API listing the messages it accepted",
		}},
		Setup: func(t *testing.T, o channeltest.Options) channeltest.Fixture {
			f := newConformanceFake(t, o, func(w http.ResponseWriter, r *http.Request, body []byte, n int) string {
				fcmSent(w, r, body, n)
				return fmt.Sprintf("projects/%s/messages/0:%d", fcmProject, n)
			}, func(status int, reason string) func(w http.ResponseWriter, r *http.Request, body []byte, n int) {
				grpc := map[int][2]string{
					429: {"RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED"}, 500: {"INTERNAL", "INTERNAL"},
					503: {"UNAVAILABLE", "UNAVAILABLE"}, 400: {"INVALID_ARGUMENT", "INVALID_ARGUMENT"},
				}[status]
				return fcmError(status, grpc[0], grpc[1], reason)
			})
			// A real service-account key whose token_uri is a local fake, so
			// the key and the access token it buys are both in play.
			tokens := newFake(t, func(w http.ResponseWriter, r *http.Request, body []byte, n int) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = fmt.Fprintf(w, `{"access_token": %q, "token_type": "Bearer", "expires_in": 3600}`, conformanceFCMToken)
			})
			key, err := fcmKey()
			require.NoError(t, err)
			der, err := x509.MarshalPKCS8PrivateKey(key)
			require.NoError(t, err)
			pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
			sa, err := json.Marshal(map[string]string{
				"type": "service_account", "project_id": fcmProject, "private_key_id": "k1",
				"private_key": pemKey, "client_email": "notify@" + fcmProject + ".iam.gserviceaccount.com",
				"token_uri": tokens.URL + "/token",
			})
			require.NoError(t, err)
			path := filepath.Join(t.TempDir(), "sa.json")
			require.NoError(t, os.WriteFile(path, sa, 0o600))

			c := fcmConfig(f.URL)
			c.ProjectID, c.CredentialsFile = "", path
			c.RatePerSecond, c.Burst, c.Timeout = o.RatePerSecond, o.Burst, o.Timeout
			p, err := channels.NewPush(context.Background(), c, nil, 3, time.Minute, o.Log)
			require.NoError(t, err)
			// Any line of the key's body would give it away.
			secrets := []string{conformanceFCMToken}
			for _, line := range strings.Split(pemKey, "\n") {
				if len(line) == 64 {
					secrets = append(secrets, line)
				}
			}
			return channeltest.Fixture{Channel: p, Calls: f.count, IDs: f.given, SetClock: p.SetClock, Secrets: secrets, Close: f.Close}
		},
		Message: func(i int) channels.Message { return pushMsg(int64(i), fmt.Sprintf("tok-%d", i)) },
		Invalid: func(i int) channels.Message { return pushMsg(int64(i), "not a token!") },
	}
}
